"""A shipped model checks every input against the configuration it was trained with.

The mistakes below are the ones learners make; each used to return numbers without a word (a
segmenter given [0, 255] images scored an mIoU of 0.03, the detector found nothing)."""

import numpy as np
import pytest
import torch

from course_utils import zoo
from course_utils.image import IMAGENET_MEAN, IMAGENET_STD, normalize
from course_utils.inputs import check_images

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def judge():
    return zoo.load("resnet_small_digits", device=CPU)  # 16x16 grey digits in [0, 1]


def digits(n=4, size=16):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def test_good_input_passes_and_gives_the_unguarded_answer(judge):
    x = digits()
    bare = zoo.REGISTRY["resnet_small_digits"].build()
    bare.load_state_dict(judge.state_dict())
    with torch.no_grad():
        assert torch.equal(judge(x), bare.eval()(x))


@pytest.mark.parametrize(
    "bad, error, fragment",
    [
        (
            (digits() * 255).to(torch.uint8),
            TypeError,
            r"got torch.uint8: for 8-bit pixels use x.float\(\) / 255",
        ),
        (digits() * 255, ValueError, r"look like 8-bit pixels in \[0, 255\]: divide by 255"),
        (digits() * 2 - 1, ValueError, r"samples in \[-1, 1\] \(use quality.to01\)"),
        (digits(size=28), ValueError, r"trained on 16x16 images, got 28x28"),
        (digits().repeat(1, 3, 1, 1), ValueError, r"trained on 1-channel images, got 3 channels"),
        (digits()[:0], ValueError, r"empty batch"),
        (digits()[0], ValueError, r"add a batch dimension with x.unsqueeze\(0\)"),
        (digits().numpy(), TypeError, r"got a NumPy array .*torch.from_numpy"),
        (digits().index_fill(0, torch.tensor([1]), float("nan")), ValueError, r"NaN or infinite"),
    ],
    ids=["uint8", "0-255", "minus1-1", "28x28", "3 channels", "empty", "no batch", "numpy", "nan"],
)
def test_a_classifier_names_the_mistake_and_the_fix(judge, bad, error, fragment):
    with pytest.raises(error, match=fragment) as err:
        judge(bad)
    assert "resnet_small_digits" in str(err.value)  # the message names the model


def test_imagenet_normalised_images_into_a_0_1_model():
    model = zoo.load("resnet_source_digits", device=CPU)  # RGB 32x32 in [0, 1]
    x = torch.rand(2, 3, 32, 32)
    model(x)
    with pytest.raises(ValueError, match=r"ImageNet-normalised images \(use image.denormalize\)"):
        model(normalize(x, IMAGENET_MEAN, IMAGENET_STD))


def test_the_scene_models_refuse_0_255_images():
    scenes = torch.rand(1, 3, 96, 96)
    for name in ("unet_digit_scenes", "detector_digits"):
        model = zoo.load(name, device=CPU)
        with torch.no_grad():
            model(scenes)  # [0, 1]: fine, at the trained size
            model(torch.rand(1, 3, 64, 64))  # fully convolutional: any scene size works
        with pytest.raises(ValueError, match=r"\[0, 255\]: divide by 255"):
            model(scenes * 255)


def test_a_diffusion_model_takes_noisy_inputs_outside_the_data_range():
    model = zoo.load("diffusion_digits", device=CPU)
    x_t = torch.randn(2, 1, 16, 16) * 3  # pure noise at large t is far outside [-1, 1]
    with torch.no_grad():
        assert model(x_t, torch.tensor([999, 999]), torch.tensor([3, 10])).shape == x_t.shape
    with pytest.raises(ValueError, match="trained on 16x16 images, got 28x28"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([5, 5]))


def test_check_images_alone():
    check_images(torch.zeros(1, 3, 4, 4), what="f", channels=3, size=4, value_range=(0, 1))
    with pytest.raises(ValueError, match=r"f takes images in \[-1, 1\].*x / 127.5 - 1"):
        check_images(torch.full((1, 1, 2, 2), 200.0), what="f", value_range=(-1, 1))
    with pytest.raises(ValueError, match=r"is it HWC\? use x.permute\(0, 3, 1, 2\)"):
        check_images(torch.zeros(1, 8, 8, 3), what="f", channels=3)
    with pytest.raises(TypeError, match="takes a tensor"):
        check_images([np.zeros((1, 1, 2, 2))], what="f")


def test_a_diffusion_model_refuses_steps_beyond_its_schedule():
    model = zoo.load("diffusion_digits", device=CPU)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():  # diffusers' Euler and Heun schedulers give float steps in [0, T)
        model(x, torch.tensor([999.0, 0.5]))
    with pytest.raises(ValueError, match=r"trained on steps t in \[0, 1000\) \(0-based\)"):
        model(x, torch.tensor([1000, 3]))


@pytest.mark.parametrize("t", [torch.tensor(5), 5])
def test_one_timestep_for_the_whole_batch_says_how(t):
    from course_utils.diffusion import ConditionalUNet, NoiseSchedule, fm_path, q_sample

    x = torch.rand(2, 1, 16, 16) * 2 - 1
    fix = r"shape \[B\] = \[2\], got .*torch.full\(\(2,\), t\)"
    with pytest.raises(ValueError, match=fix):
        q_sample(NoiseSchedule(100), x, t, torch.randn_like(x))
    with pytest.raises(ValueError, match=fix):
        fm_path(x, torch.randn_like(x), t if isinstance(t, int) else t.float() / 10)
    with pytest.raises(ValueError, match=fix):
        ConditionalUNet(1, 8, 10)(x, t)


def test_latent_scale_takes_images_in_0_1():
    from course_utils.latent import latent_scale

    vae = zoo.load("autoencoder_digits", device=CPU)
    images = torch.rand(8, 1, 16, 16)
    assert latent_scale(vae, images) > 0
    with pytest.raises(ValueError, match=r"latent_scale takes images in \[0, 1\]"):
        latent_scale(vae, images * 2 - 1)  # already in [-1, 1]: would be mapped twice


def test_each_generative_model_is_sampled_the_way_it_was_trained():
    from course_utils.diffusion import sample_ddim, sample_euler, trained_schedule

    diffusion, flow = zoo.load("diffusion_digits", device=CPU), zoo.load("flow_digits", device=CPU)
    with pytest.raises(ValueError, match="diffusion model .* sample_ddim"):
        sample_euler(diffusion, (1, 1, 16, 16), num_steps=2, progress=False)
    with pytest.raises(ValueError, match="flow-matching model .* sample_euler"):
        sample_ddim(flow, trained_schedule(diffusion), (1, 1, 16, 16), num_steps=2, progress=False)
    assert sample_euler(flow, (1, 1, 16, 16), num_steps=2, progress=False).shape == (1, 1, 16, 16)
