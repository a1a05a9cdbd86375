"""What the study shows: result tables beside the paper (``tables``), verdicts on the paper's
claims (``claims``), the README's results block (``readme``), run manifests (``manifest``) and
figures (``figures``)."""
