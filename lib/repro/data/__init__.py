"""Corpora, tokenizer and domain-weighted sampling shared by the language-model notebooks."""

from .build import load_text, load_tokens
from .tokenizer import vocab_size

__all__ = ["load_text", "load_tokens", "vocab_size"]
