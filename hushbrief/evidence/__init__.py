"""Evidence formats shared by the backend (which produces them) and the bot (which checks them).

Parsing only: nothing here decides whether evidence is trustworthy. The bot's
verifiers (``hushbrief.bot.attestation``) do that; the backend's providers
(``hushbrief.backend.platforms``) produce what is parsed here.
"""
