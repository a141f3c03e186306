"""The stack's one OpenAI-compatible endpoint: every client's requests go to the best upstream from here."""
