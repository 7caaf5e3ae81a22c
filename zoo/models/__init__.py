"""Random-init models by name: the paper's architectures, small test models, and other libraries'.

The model classes live one family a module (:mod:`zoo.models.mlp`, ``conv``, ``resnet``,
``transformer``); ids are parsed in :mod:`zoo.models.ids` and built in :mod:`zoo.models.build`.

Model ids::

    mlp2                                   same as zoo:mlp2
    zoo:mlp?depth=3&width=512              a plain MLP (depth hidden layers)
    zoo:conv8?width=0.25&num_classes=10    a zoo factory; query values parsed as int/float/bool/str
    torchvision:resnet18                   torchvision.models.get_model(name, weights=None, **kw)
    timm:vit_tiny_patch16_224              timm.create_model(name, pretrained=False, **kw)
    hf:gpt2?n_layer=2&n_embd=64            a transformers Config(**kw) and its model class, use_cache=False
    package.module:factory                 any callable returning an nn.Module (trusted ids only)

Trust: a ``package.module:factory`` id imports and runs Python code, so :func:`build` refuses it
unless the caller says the id came from the user (``trust_code=True``: typed on a command line or
passed in Python). Ids read from files people share (a trajectory's ``manifest.json``, a
``results.json``, a config) may only name the built-in sources ``zoo:``, ``torchvision:``,
``timm:`` and ``hf:``.

Nothing is ever downloaded: asking for pretrained weights is an error. Every zoo model's forward is
``torch.export.export(model, example_inputs(...), strict=False)``-able: no data-dependent control flow.

>>> model = build("zoo:conv8?width=0.25")
>>> model(*example_inputs("conv8")).shape
torch.Size([2, 10])
"""

from zoo.models.build import BUILDERS, HF_MODELS, ZOO, build, example_inputs, list_models
from zoo.models.common import scale_init
from zoo.models.conv import VGG, Conv8, conv8, vgg16
from zoo.models.ids import SOURCES, canonical_id, parse_model_id, refuse_untrusted
from zoo.models.mlp import MLP, MLP2, mlp, mlp2
from zoo.models.resnet import BasicBlock, ResNet, ResNet20, resnet18, resnet20
from zoo.models.transformer import GPTTiny, ViTTiny, gpt_tiny, vit_tiny

__all__ = [
    "MLP",
    "MLP2",
    "Conv8",
    "ResNet",
    "BasicBlock",
    "ResNet20",
    "VGG",
    "ViTTiny",
    "GPTTiny",
    "mlp",
    "mlp2",
    "conv8",
    "resnet18",
    "resnet20",
    "vgg16",
    "vit_tiny",
    "gpt_tiny",
    "ZOO",
    "HF_MODELS",
    "BUILDERS",
    "SOURCES",
    "build",
    "refuse_untrusted",
    "scale_init",
    "parse_model_id",
    "canonical_id",
    "example_inputs",
    "list_models",
]
