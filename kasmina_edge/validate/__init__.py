"""Staged validation of a bundle (``kasmina-edge validate``) and the compliance checklist (``kasmina-edge certify``).

``plan`` reads the pass criteria; ``context`` holds what the stages share (the verified bundle, the records, the
hardware profile); ``stage_*`` are the stages 0-6, ``pipeline`` runs them in order; ``injector`` plants the faults
of stage 4; ``report_html`` and ``report_signing`` write the signed report; ``certify``, ``checks_*``, ``sbom``,
``erase`` and ``log_crypto`` are the compliance checks.
"""
