"""Key map for GoogLeNet (torchvision). Convolution units already hold ``conv``/``bn``; the
inception modules' ``branch1..4`` become our named branches, the auxiliary heads ``aux1/aux2``
become ``aux_heads.0/1``."""

from . import KeyMap, register_converter

_P = r"((?:conv|bn)\.\w+)"  # the rest of a conv unit's key

_TV = KeyMap((
    (rf"(conv[123])\.{_P}", r"features.\1.\2"),
    (rf"(inception\w+)\.branch1\.{_P}", r"features.\1.b1x1.0.\2"),
    (rf"(inception\w+)\.branch2\.([01])\.{_P}", r"features.\1.b3x3.\2.\3"),
    (rf"(inception\w+)\.branch3\.([01])\.{_P}", r"features.\1.b5x5.\2.\3"),
    (rf"(inception\w+)\.branch4\.1\.{_P}", r"features.\1.pool.1.\2"),
    (rf"aux1\.conv\.{_P}", r"aux_heads.0.convs.0.\1"),
    (rf"aux2\.conv\.{_P}", r"aux_heads.1.convs.0.\1"),
    (r"aux1\.fc1\.(weight|bias)", r"aux_heads.0.fc1.\1"),
    (r"aux2\.fc1\.(weight|bias)", r"aux_heads.1.fc1.\1"),
    (r"aux1\.fc2\.(weight|bias)", r"aux_heads.0.fc.\1"),
    (r"aux2\.fc2\.(weight|bias)", r"aux_heads.1.fc.\1"),
    (r"fc\.(weight|bias)", r"head.fc.\1"),
))

register_converter("googlenet", "torchvision", _TV,
                   feature_nodes=["conv1", "conv3", "inception3b", "inception4e", "inception5b"])
