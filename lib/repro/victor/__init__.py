"""VICTOR (Lei et al., ACM MM 2021, arXiv 2104.09411): video-language pre-training with reconstructive and
contrastive proxy tasks, a momentum key network and three memory queues (notebook 06). The rendered videos and
the loader for a real corpus are in :mod:`.data`, the networks, the momentum update and the queues in
:mod:`.model`, the proxy tasks in :mod:`.tasks`, pre-training and evaluation in :mod:`.pretrain`, the runs in
:mod:`.sweep`, their analysis in :mod:`.analysis` and the notebook's profiles in :mod:`.profiles`."""
