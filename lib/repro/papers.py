"""The six papers of the workbook, keyed by notebook number."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    """One paper of the workbook: its notebook number (``"03"``), key, title, venue and link."""

    number: str
    key: str
    title: str
    venue: str
    url: str


PAPERS = {
    p.number: p
    for p in [
        Paper("01", "ddk", "DDK: Distilling Domain Knowledge for Efficient LLMs", "NeurIPS 2024",
              "https://arxiv.org/abs/2407.16154"),
        Paper("02", "c4", "C4: communication-driven diagnosis (C4D) and traffic planning (C4P)", "HPCA 2025",
              "https://arxiv.org/abs/2406.04594"),
        Paper("03", "dcpt_law", "D-CPT Law: Domain-specific Continual Pre-Training Scaling Law", "NeurIPS 2024",
              "https://arxiv.org/abs/2406.01375"),
        Paper("04", "picasso", "PICASSO: GPU-centric training of wide-and-deep recommenders", "ICDE 2022",
              "https://arxiv.org/abs/2204.04903"),
        Paper("05", "m6t", "M6-T: Exploring Sparse Expert Models and Beyond", "arXiv 2021",
              "https://arxiv.org/abs/2105.15082"),
        Paper("06", "victor", "VICTOR: contrastive multimodal pre-training for Chinese video and language",
              "ACM MM 2021", "https://arxiv.org/abs/2104.09411"),
    ]
}


def paper_for(notebook: str) -> Paper | None:
    """The paper a notebook (``03_dcpt_law``) belongs to, by its number prefix."""
    return PAPERS.get(notebook[:2])
