"""Offline verification of backend evidence: platform verifiers, policy, transparency.

Every verifier takes "now" as a parameter and touches no network; the bot
fetches bundles through the relay and hands them here.
"""
