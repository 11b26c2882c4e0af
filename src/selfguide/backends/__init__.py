"""Model backends. Import the one you need (selfguide.backends.hf, ...): nothing heavy loads here."""
