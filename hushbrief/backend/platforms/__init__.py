"""Evidence providers for the TEE platforms the backend runs on (SEV-SNP, TDX, Nitro)."""
