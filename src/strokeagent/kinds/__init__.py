"""Stage kinds by family: ``head.*`` (a text head plans and inspects), ``diffusion.*`` (an image backend
drafts and refines), ``hybrid.*`` (a stroke sketch painted over), ``critic.*`` (stages made from a critic).

The embedded world's ``sketch.*`` kinds live in ``strokeagent.sketch`` and the unified model's ``process``
kind in ``strokeagent.unified.process``, beside the code they drive.
"""
