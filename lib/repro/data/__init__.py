"""Corpora, tokenizer and domain-weighted sampling shared by the language-model notebooks."""
