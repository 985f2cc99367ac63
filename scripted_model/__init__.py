"""A scripted model server: a stand-in for the model providers, for tests and for trying the AI
presets without a key (see server.py)."""
