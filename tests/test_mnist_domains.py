"""DomainBed's MNIST environments: rotation angles, ColoredMNIST's colour–label agreement and label noise, sizes,
the two protocols; the rotation and split helpers on synthetic images, the rest on the pinned real MNIST."""

from __future__ import annotations

import math

import pytest
import torch

from asymlora.data.environments import environment_task, in_out, resolve_env
from asymlora.data.mnist_domains import ANGLES, COLOUR_FLIP, LABEL_NOISE, colour, pooled_mnist, rotate
from asymlora.data.registry import get_task
from asymlora.data.task import DataError
from asymlora.tasks.image import ImageSet


def bar(length: int = 20, size: int = 28) -> torch.Tensor:
    """A horizontal bright bar through the centre of a black (1, 1, size, size) image."""
    img = torch.zeros(1, 1, size, size, dtype=torch.uint8)
    img[0, 0, size // 2 - 1: size // 2 + 1, (size - length) // 2: (size + length) // 2] = 255
    return img


def orientation(img: torch.Tensor) -> float:
    """The angle (degrees, counter-clockwise from the x axis, y pointing up) of the image's principal axis."""
    w = img[0, 0].double()
    ys, xs = torch.meshgrid(torch.arange(w.shape[0], dtype=torch.double), torch.arange(w.shape[1], dtype=torch.double),
                            indexing="ij")
    m = w.sum()
    x, y = (xs * w).sum() / m, -(ys * w).sum() / m
    dx, dy = xs - x, -ys - y
    cxx, cyy, cxy = (w * dx * dx).sum() / m, (w * dy * dy).sum() / m, (w * dx * dy).sum() / m
    return math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy))


@pytest.mark.parametrize("angle", ANGLES)
def test_rotation_turns_a_bar_counter_clockwise_by_the_environment_angle(angle):
    assert orientation(rotate(bar(), angle)) == pytest.approx(angle, abs=1.0)


def test_rotation_keeps_the_centre_and_mass():
    img = bar()
    out = rotate(img, 45)
    assert out.dtype == torch.uint8 and out.shape == img.shape
    assert out.float().sum().item() == pytest.approx(img.float().sum().item(), rel=0.05)  # bilinear, nothing falls off the edge
    assert torch.equal(rotate(img, 0), img)


def test_colour_agreement_and_label_noise_on_synthetic_digits():
    g = torch.Generator().manual_seed(0)
    n = 20000
    digits = torch.randint(0, 10, (n,), generator=g)
    images = torch.full((n, 4, 4), 200, dtype=torch.uint8)
    for flip in COLOUR_FLIP.values():
        s = colour(images, digits, flip, g)
        lit = (s.images.flatten(2).sum(-1) > 0).long()  # (n, 2): which channel is on
        assert torch.all(lit.sum(1) == 1)
        agree = (lit[:, 1] == s.labels).double().mean().item()  # channel c is kept, c agrees with y w.p. 1 − flip
        noise = (s.labels != (digits < 5).long()).double().mean().item()
        sigma = math.sqrt(0.25 / n)
        assert abs(agree - (1 - flip)) < 4 * sigma
        assert abs(noise - LABEL_NOISE) < 4 * sigma


def test_in_out_split_is_seeded_disjoint_and_eighty_twenty():
    env = ImageSet(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), torch.zeros(100, dtype=torch.long))
    a, b = in_out(env, seed=3)
    assert (len(a), len(b)) == (80, 20)
    ids = set(a.images.flatten().tolist()) | set(b.images.flatten().tolist())
    assert len(ids) == 100
    a2, b2 = in_out(env, seed=3)
    assert torch.equal(b.images, b2.images)
    assert not torch.equal(b.images, in_out(env, seed=4)[1].images)


def test_environment_task_protocols_and_errors():
    envs = {f"rot{i}": ImageSet(torch.full((50, 1, 2, 2), i, dtype=torch.uint8), torch.arange(50) % 2) for i in range(3)}
    t = environment_task("t", envs, ("a", "b"), train_env="1")
    assert t.extra_test_names() == ("rot0", "rot2")
    assert {int(v) for s in ("train", "validation", "test") for v in t.part(s).images.unique()} == {1}
    assert (t.split_size("train"), t.split_size("validation"), t.split_size("test")) == (36, 4, 10)
    loo = environment_task("t", envs, ("a", "b"), train_env=None, leave_out="rot2")
    assert loo.extra_test_names() == ("rot2",) and loo.split_size("rot2") == 50
    assert {int(v) for v in loo.part("train").images.unique()} == {0, 1}
    assert loo.split_size("test") == 20
    with pytest.raises(DataError, match="rot0, rot1, rot2"):
        resolve_env("90", list(envs), "t")
    with pytest.raises(DataError, match="not both"):
        environment_task("t", envs, ("a", "b"), train_env="rot0", leave_out="rot1")


@pytest.mark.slow
def test_rotated_mnist_environments_are_domainbeds_slices_of_pooled_mnist():
    images, digits = pooled_mnist(0)
    assert images.shape == (70000, 28, 28) and torch.bincount(digits).tolist()[:2] == [6903, 7877]
    t = get_task("rotated-mnist")
    sizes = t.summary()["sizes"]
    assert sizes == {"train": 8401, "validation": 933, "test": 2333, "rot15": 11667, "rot30": 11667, "rot45": 11667,
                     "rot60": 11666, "rot75": 11666}
    assert torch.equal(t.part("rot45").images, rotate(images[3::6, None], 45))  # environment 3 of 6, turned 45°
    assert torch.equal(t.part("rot45").labels, digits[3::6])
    rot0 = torch.cat([t.part(s).labels for s in ("train", "validation", "test")])  # the rot0 environment, split
    assert torch.equal(torch.bincount(rot0), torch.bincount(digits[0::6]))
    pixels = torch.cat([t.part(s).images for s in ("train", "validation", "test")]).flatten(1).sum(1).sort().values
    assert torch.equal(pixels, images[0::6].flatten(1).long().sum(1).sort().values)


@pytest.mark.slow
def test_colored_mnist_rates_on_real_digits_and_the_options():
    images, digits = pooled_mnist(0)
    t = get_task("colored-mnist")
    assert t.extra_test_names() == ("plus80", "minus90")
    assert t.split_size("plus80") == 23333 and t.split_size("train") + t.split_size("validation") == 18667
    for i, (name, flip) in enumerate(COLOUR_FLIP.items()):
        part = t.part(name) if name != "plus90" else None
        if part is None:
            continue
        lit = (part.images.flatten(2).sum(-1) > 0).long()
        agree = (lit[:, 1] == part.labels).double().mean().item()
        noise = (part.labels != (digits[i::3] < 5).long()).double().mean().item()
        sigma = math.sqrt(0.25 / len(part))
        assert abs(agree - (1 - flip)) < 4 * sigma and abs(noise - LABEL_NOISE) < 4 * sigma
    small = get_task("colored-mnist", per_env="200", leave_out="minus90")
    assert small.summary()["sizes"] == {"train": 288, "validation": 32, "test": 80, "minus90": 200}
    with pytest.raises(DataError, match="at least 10"):
        get_task("rotated-mnist", per_env="3")


def test_a_bad_option_is_a_clear_error():
    with pytest.raises(DataError, match="task option per_env must be an integer or 'all', got 'many'"):
        get_task("colored-mnist", per_env="many")
    with pytest.raises(DataError, match="task option seed must be an integer, got 'x'"):
        get_task("rotated-mnist", seed="x", per_env="20")
