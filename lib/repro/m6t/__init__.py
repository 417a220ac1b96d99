"""M6-T (Yang et al. 2021, arXiv 2105.15082): sparse experts, top-k routing, capacity, balance loss and expert
prototyping, at small scale (notebook 05). The layer itself is :mod:`repro.nn.moe`; here are the runs
(:mod:`.sweep`), their analysis (:mod:`.analysis`) and the notebook's profiles (:mod:`.profiles`)."""
