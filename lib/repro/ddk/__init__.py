"""DDK (Liu et al., NeurIPS 2024, arXiv 2407.16154): distilling a small language model from a stronger teacher
while re-weighting the data domains by the student/teacher perplexity ratio (notebook 01). The equations are in
:mod:`.equations`, the distillation model and the re-weighting hook in :mod:`.distill`, the runs in :mod:`.sweep`,
their analysis in :mod:`.analysis`, the cost measurement in :mod:`.cost` and the notebook's profiles in
:mod:`.profiles`."""
