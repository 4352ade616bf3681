import numpy as np
import pytest
import skimage.data
import torch

from mindhier.backbones import efficientnet_lite
from mindhier.errors import WeightsError

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("name", efficientnet_lite.NAMES)
def test_real_imagenet_weights_recognise_a_cat(name):
    """The bundled weights are really loaded: scikit-image's cat photo is classified as a cat."""
    image = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    model = efficientnet_lite.cached(name)
    with torch.no_grad():
        probabilities = model(efficientnet_lite.to_network_input(image, 224)).softmax(-1)[0]
    assert int(probabilities.argmax()) in CAT_CLASSES
    assert float(probabilities[list(CAT_CLASSES)].sum()) > 0.5
    random_init = efficientnet_lite.build(name, pretrained=False)
    with torch.no_grad():
        chance = random_init(efficientnet_lite.to_network_input(image, 224)).softmax(-1)[0]
    assert float(chance[list(CAT_CLASSES)].sum()) < 0.1


def test_pooled_features_shape_and_batch_independence():
    model = efficientnet_lite.cached("efficientnet-lite2")
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    together = efficientnet_lite.pooled_features(model, images, 64)
    alone = efficientnet_lite.pooled_features(model, images[2:3], 64)
    assert together.shape == (6, 1280)
    np.testing.assert_allclose(together[2:3].numpy(), alone.numpy(), rtol=1e-4, atol=1e-5)


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(WeightsError, match="available: efficientnet-lite0, efficientnet-lite2"):
        efficientnet_lite.build("efficientnet-b7")


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite2"])
def test_folded_network_computes_the_same_features_without_batch_norms_or_symmetric_pads(name):
    model = efficientnet_lite.build(name).eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    folded = efficientnet_lite.folded_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    pads = [m.padding for m in folded.modules() if isinstance(m, torch.nn.ZeroPad2d)]
    assert all(p[0] != p[1] or p[2] != p[3] for p in pads)  # only the asymmetric (stride-2) pads are left
    x = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference, fast = model.extract_features(x), folded.extract_features(x)
    assert fast.shape == reference.shape
    assert (fast - reference).abs().max() <= 1e-4 * reference.abs().max()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())  # the original is untouched
