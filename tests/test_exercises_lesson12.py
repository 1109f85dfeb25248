import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed

from course_utils.exercises import lesson12

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def bpe(word, rules):
    pieces = [*word[:-1], word[-1] + "</w>"]
    ranks = {pair: i for i, pair in enumerate(rules)}
    while len(pieces) > 1:  # the textbook form: join the best-ranked pair present, repeat
        pairs = [(ranks.get(p, len(ranks)), i) for i, p in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def guided_noise(unet, latents, t, prompt_tokens, negative_tokens, scale):
    both = unet(
        torch.cat([latents] * 2),
        t,
        encoder_hidden_states=torch.cat([negative_tokens, prompt_tokens]),
    ).sample
    negative, prompt = both.chunk(2)
    return negative + scale * (prompt - negative)


def attention_weights(query, key, heads):
    q = query.unflatten(-1, (heads, -1)).transpose(1, 2)  # [B, heads, N, d]
    k = key.unflatten(-1, (heads, -1)).transpose(1, 2)
    return (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)


def img2img_start(scheduler, latents, noise, num_inference_steps, strength):
    scheduler.set_timesteps(num_inference_steps)
    run = int(num_inference_steps * strength)
    timesteps = scheduler.timesteps[len(scheduler.timesteps) - run :]
    return timesteps, scheduler.add_noise(latents, noise, timesteps[:1])


CHECKS = {
    "12.1 byte-pair encoding of a word": (lesson12.check_bpe, bpe),
    "12.2 classifier-free guidance with a negative prompt": (
        lesson12.check_guided_noise,
        guided_noise,
    ),
    "12.3 cross-attention weights per head": (lesson12.check_attention_weights, attention_weights),
    "12.4 the start of image-to-image": (lesson12.check_img2img_start, img2img_start),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


@pytest.mark.parametrize("name", list(CHECKS))
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


# ------------------------------------------------------------------ wrong answers get hints


def test_bpe_hints():
    assert failed(lesson12.check_bpe(lambda w, r: list(w)), "</w>")

    # one left-to-right pass that joins each letter onto the piece before it when a rule allows
    def left_to_right(word, rules):
        pieces = [word[0]]
        for letter in [*word[1:-1], word[-1] + "</w>"] if len(word) > 1 else []:
            if (pieces[-1], letter) in rules:
                pieces[-1] += letter
            else:
                pieces.append(letter)
        return pieces if len(word) > 1 else [word + "</w>"]

    assert failed(lesson12.check_bpe(left_to_right), "in order")


def test_guidance_hints():
    def swapped(unet, latents, t, p, n, s):
        return guided_noise(unet, latents, t, n, p, s)

    assert failed(lesson12.check_guided_noise(swapped), "swapped")
    assert failed(
        lesson12.check_guided_noise(
            lambda u, x, t, p, n, s: u(x, t, encoder_hidden_states=p).sample
        ),
        "ε_neg + s",
    )


def test_attention_hints():
    def over_pixels(q, k, heads):
        return attention_weights(q, k, heads).softmax(-2)  # not right whatever it normalises

    def wrong_scale(q, k, heads):
        q2, k2 = (v.unflatten(-1, (heads, -1)).transpose(1, 2) for v in (q, k))
        return (q2 @ k2.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)

    def pixel_softmax(q, k, heads):
        q2, k2 = (v.unflatten(-1, (heads, -1)).transpose(1, 2) for v in (q, k))
        return (q2 @ k2.transpose(-1, -2) / q2.shape[-1] ** 0.5).softmax(-2)

    assert failed(lesson12.check_attention_weights(pixel_softmax), "last axis")
    assert failed(lesson12.check_attention_weights(wrong_scale), "square root")
    assert failed(lesson12.check_attention_weights(over_pixels), "softmax")
    assert failed(lesson12.check_attention_weights(lambda q, k, h: q), "shape")


def test_img2img_hints():
    def inverted(scheduler, latents, noise, steps, strength):
        return img2img_start(scheduler, latents, noise, steps, 1 - strength)

    def clean_start(scheduler, latents, noise, steps, strength):
        timesteps, _ = img2img_start(scheduler, latents, noise, steps, strength)
        return timesteps, latents

    assert failed(lesson12.check_img2img_start(inverted), "not the share")
    assert failed(lesson12.check_img2img_start(clean_start), "add_noise")
