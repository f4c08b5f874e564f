"""The generated kubelet device plugin API, imported in one place.

The stubs are generated (hack/deviceplugin/gen.sh) and git-ignored, so a checkout that has
not run it gets one clear error naming the fix instead of a bare ModuleNotFoundError.
"""

from __future__ import annotations


class StubsMissing(ImportError):
    """The generated stubs are absent or do not load with the installed grpcio/protobuf."""


try:
    from podvirt.launcher.deviceplugin._api import api_pb2 as pb
    from podvirt.launcher.deviceplugin._api import api_pb2_grpc as rpc
except Exception as e:  # ImportError, or protobuf's/grpc's gencode version checks
    raise StubsMissing(f"the kubelet device plugin API stubs do not load ({e}); "
                       "generate them with hack/deviceplugin/gen.sh") from e

__all__ = ["pb", "rpc", "StubsMissing"]
