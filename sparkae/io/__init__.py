"""The file-system layer: every read and write of sparkae goes through it."""
