"""Checks that what goes in and what comes out is what it claims to be: speech, speaker, models."""
