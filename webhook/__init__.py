"""The mutating admission webhook: VM-annotated pods in, launcher pods out.

Layers, each looking only down: wire (AdmissionReview shapes), render (VMSpec -> launcher
pod, as composable options), admission (the decision), app (Flask), server/tls/cli
(gunicorn, certificate reload).
"""
