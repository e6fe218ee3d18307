"""Views: how the positives of a contrastive term are made (graph and image augmentations, text views).

Domain modules sit behind their extras: ``contrastlab.views.graph`` needs ``contrastlab[graph]``.
"""
