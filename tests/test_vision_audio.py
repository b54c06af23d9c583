"""Vision, audio and dual-encoder tasks: export, ORT model classes and pipelines vs PyTorch.

Each tiny model is exported with its processor; the ORT model must return the output class
the PyTorch architecture returns, and `onnxport.pipeline` must give what transformers'
pipeline gives on the PyTorch model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import onnxport
from onnxport.errors import TaskError
from onnxport.testing import tiny_config, tiny_model, tiny_tokenizer

SAMPLING_RATE = 16000


def _images(count: int, size: tuple[int, int] = (40, 52)) -> list[Image.Image]:
    rng = np.random.default_rng(count)
    return [Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8")) for _ in range(count)]


def _clips(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        rng.standard_normal(SAMPLING_RATE // 4 + 800 * i).astype(np.float32) for i in range(count)
    ]


def _export(model: Any, task: str, folder: Path, **kwargs: Any) -> Path:
    result = onnxport.export(model, folder, task=task, **kwargs)
    assert result.validation is not None
    assert result.validation.passed
    return folder


def _image_processor(size: int, cls: str = "ViTImageProcessorPil", **kwargs: Any) -> Any:
    return getattr(transformers, cls)(size={"height": size, "width": size}, **kwargs)


def _assert_same_classification(ours: list[Any], reference: list[Any]) -> None:
    for got, expected in zip(ours, reference, strict=True):
        assert [x["label"] for x in got] == [x["label"] for x in expected]
        np.testing.assert_allclose(
            [x["score"] for x in got], [x["score"] for x in expected], atol=1e-5
        )


def test_image_classification_pipeline_matches_pytorch(tmp_path: Path) -> None:
    model = tiny_model(tiny_config("vit", image_size=32, patch_size=8), "image-classification")
    processor = _image_processor(32)
    folder = _export(model, "image-classification", tmp_path / "vit", processor=processor)
    images = _images(3)
    ours = onnxport.pipeline("image-classification", model=folder)(images)
    reference = transformers.pipeline(
        "image-classification", model=model, image_processor=processor
    )(images)
    _assert_same_classification(ours, reference)
    ort_model = onnxport.ORTModelForImageClassification.from_pretrained(folder)
    output = ort_model(**processor(images, return_tensors="pt"))
    assert isinstance(output, transformers.modeling_outputs.ImageClassifierOutput)
    assert output.logits.shape == (3, 3)


def test_object_detection_pipeline_matches_pytorch(tmp_path: Path) -> None:
    config = tiny_config("detr", num_queries=6)
    model = tiny_model(config, "object-detection")
    processor = transformers.DetrImageProcessorPil(size={"height": 64, "width": 64}, do_pad=False)
    folder = _export(model, "object-detection", tmp_path / "detr", processor=processor)
    images = _images(2, (60, 80))
    ours = onnxport.pipeline("object-detection", model=folder, threshold=0.0)(images)
    reference = transformers.pipeline(
        "object-detection", model=model, image_processor=processor, threshold=0.0
    )(images)
    for got, expected in zip(ours, reference, strict=True):
        assert len(got) == len(expected) > 0
        assert [x["label"] for x in got] == [x["label"] for x in expected]
        np.testing.assert_allclose(
            [x["score"] for x in got], [x["score"] for x in expected], atol=1e-4
        )
        for a, b in zip(got, expected, strict=True):
            assert abs(a["box"]["xmin"] - b["box"]["xmin"]) <= 1
            assert abs(a["box"]["ymax"] - b["box"]["ymax"]) <= 1
    output = onnxport.ORTModelForObjectDetection.from_pretrained(folder)(
        **processor(images, return_tensors="pt")
    )
    assert type(output).__name__ == "DetrObjectDetectionOutput"
    assert output.pred_boxes.shape == (2, 6, 4)


@pytest.mark.slow  # ~40-90 s; `make test-slow`
def test_semantic_segmentation_pipeline_matches_pytorch(tmp_path: Path) -> None:
    model = tiny_model(tiny_config("segformer", num_labels=3), "semantic-segmentation")
    processor = _image_processor(64, "SegformerImageProcessorPil")
    folder = _export(model, "semantic-segmentation", tmp_path / "seg", processor=processor)
    image = _images(1, (48, 64))[0]
    ours = onnxport.pipeline("semantic-segmentation", model=folder)(image, subtask="semantic")
    reference = transformers.pipeline("image-segmentation", model=model, image_processor=processor)(
        image, subtask="semantic"
    )
    assert [x["label"] for x in ours] == [x["label"] for x in reference]
    for got, expected in zip(ours, reference, strict=True):
        assert (np.asarray(got["mask"]) != np.asarray(expected["mask"])).mean() < 0.01


def test_depth_estimation_matches_pytorch(tmp_path: Path) -> None:
    model = tiny_model(tiny_config("glpn", num_encoder_blocks=4), "depth-estimation")
    processor = transformers.GLPNImageProcessorPil()
    folder = _export(model, "depth-estimation", tmp_path / "glpn", processor=processor)
    image = _images(1, (64, 64))[0]
    ours = onnxport.pipeline("depth-estimation", model=folder)(image)
    reference = transformers.pipeline("depth-estimation", model=model, image_processor=processor)(
        image
    )
    np.testing.assert_allclose(
        ours["predicted_depth"].numpy(), reference["predicted_depth"].numpy(), atol=1e-4
    )


def test_zero_shot_image_classification_scores_any_number_of_labels(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    config = tiny_config("clip", tokenizer=tokenizer)
    config.vision_config.image_size = 32
    config.vision_config.patch_size = 8
    model = tiny_model(config, "zero-shot-image-classification")
    processor = _image_processor(32, "CLIPImageProcessorPil", crop_size={"height": 32, "width": 32})
    folder = _export(
        model, "zero-shot-image-classification", tmp_path / "clip", tokenizer=tokenizer,
        processor=processor,
    )  # fmt: skip
    image = _images(1)[0]
    labels = ["a photo of a cat", "a dog", "the capital of France", "a train station"]
    ours = onnxport.pipeline("zero-shot-image-classification", model=folder)(
        image, candidate_labels=labels
    )
    reference = transformers.pipeline(
        "zero-shot-image-classification", model=model, tokenizer=tokenizer,
        image_processor=processor,
    )(image, candidate_labels=labels)  # fmt: skip
    assert [x["label"] for x in ours] == [x["label"] for x in reference]
    np.testing.assert_allclose(
        [x["score"] for x in ours], [x["score"] for x in reference], atol=1e-5
    )
    # Two images against four texts: the graph counts images and texts apart.
    ort_model = onnxport.ORTModelForZeroShotImageClassification.from_pretrained(folder)
    text = tokenizer(labels, padding=True, return_tensors="pt")
    pixels = processor(_images(2), return_tensors="pt")["pixel_values"]
    output = ort_model(**text, pixel_values=pixels)
    assert type(output).__name__ == "CLIPOutput"
    with torch.no_grad():
        expected = model(**text, pixel_values=pixels).logits_per_image
    assert output.logits_per_image.shape == (2, 4)
    torch.testing.assert_close(output.logits_per_image, expected, atol=1e-4, rtol=1e-4)


def _audio_model(task: str, **overrides: Any) -> Any:
    config = tiny_config(
        "wav2vec2",
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_feat_extract_layers=2,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, **overrides,
    )  # fmt: skip
    return tiny_model(config, task)


def test_audio_classification_pipeline_matches_pytorch(tmp_path: Path) -> None:
    model = _audio_model("audio-classification")
    extractor = transformers.Wav2Vec2FeatureExtractor(sampling_rate=SAMPLING_RATE)
    folder = _export(model, "audio-classification", tmp_path / "w2v", processor=extractor)
    clips = _clips(2)
    ours = onnxport.pipeline("audio-classification", model=folder)(clips)
    reference = transformers.pipeline(
        "audio-classification", model=model, feature_extractor=extractor
    )(clips)
    _assert_same_classification(ours, reference)


def _ctc_tokenizer(folder: Path) -> Any:
    letters = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({c: i + 5 for i, c in enumerate(letters)})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"))


def test_ctc_speech_recognition_pipeline_matches_pytorch(tmp_path: Path) -> None:
    tokenizer = _ctc_tokenizer(tmp_path / "vocab")
    model = _audio_model("ctc", vocab_size=len(tokenizer), pad_token_id=0)
    extractor = transformers.Wav2Vec2FeatureExtractor(sampling_rate=SAMPLING_RATE)
    # "automatic-speech-recognition" resolves to the CTC head for wav2vec2.
    folder = _export(
        model, "automatic-speech-recognition", tmp_path / "ctc", tokenizer=tokenizer,
        processor=extractor,
    )  # fmt: skip
    clips = _clips(2)
    ours = onnxport.pipeline("automatic-speech-recognition", model=folder)(clips)
    reference = transformers.pipeline(
        "automatic-speech-recognition", model=model, tokenizer=tokenizer,
        feature_extractor=extractor,
    )(clips)  # fmt: skip
    assert ours == reference
    assert any(len(x["text"]) >= 3 for x in ours)
    output = onnxport.ORTModelForCTC.from_pretrained(folder)(
        **extractor(clips, sampling_rate=SAMPLING_RATE, padding=True, return_tensors="pt")
    )
    assert isinstance(output, transformers.modeling_outputs.CausalLMOutput)


@pytest.mark.parametrize(
    ("task", "ort_class", "output_class"),
    [
        (
            "audio-frame-classification",
            "ORTModelForAudioFrameClassification",
            "TokenClassifierOutput",
        ),
        ("audio-xvector", "ORTModelForAudioXVector", "XVectorOutput"),
    ],
)
def test_audio_heads_return_transformers_outputs(
    tmp_path: Path, task: str, ort_class: str, output_class: str
) -> None:
    model = _audio_model(task)
    folder = _export(model, task, tmp_path / task)
    clips = torch.from_numpy(np.stack([c[:4000] for c in _clips(3)]))
    output = getattr(onnxport, ort_class).from_pretrained(folder)(input_values=clips)
    assert type(output).__name__ == output_class
    with torch.no_grad():
        expected = model(input_values=clips)
    torch.testing.assert_close(output.logits, expected.logits, atol=1e-4, rtol=1e-4)


def test_vision_feature_extraction_and_masked_im(tmp_path: Path) -> None:
    config = tiny_config("vit", image_size=32, patch_size=8, encoder_stride=8)
    processor = _image_processor(32)
    images = _images(2)
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    bare = tiny_model(config, "image-feature-extraction")
    folder = _export(bare, "image-feature-extraction", tmp_path / "bare", processor=processor)
    features = onnxport.pipeline("image-feature-extraction", model=folder)(images)
    reference = transformers.pipeline(
        "image-feature-extraction", model=bare, image_processor=processor
    )(images)
    np.testing.assert_allclose(np.array(features), np.array(reference), atol=1e-4)
    # The same graph loads as plain feature-extraction: its main input is pixel_values.
    output = onnxport.ORTModelForFeatureExtraction.from_pretrained(folder)(pixels)
    assert output.last_hidden_state.shape == (2, 17, 32)

    masked = tiny_model(config, "masked-im")
    folder = _export(masked, "masked-im", tmp_path / "mim")
    output = onnxport.ORTModelForMaskedImageModeling.from_pretrained(folder)(pixel_values=pixels)
    assert type(output).__name__ == "MaskedImageModelingOutput"
    with torch.no_grad():
        expected = masked(pixel_values=pixels).reconstruction
    torch.testing.assert_close(output.reconstruction, expected, atol=1e-4, rtol=1e-4)


def test_random_masking_noise_is_an_input(tmp_path: Path) -> None:
    """ViT-MAE masks patches by noise forward draws itself: a graph would freeze one draw.
    The noise is an input; the ORT class draws it when not given, as forward does."""
    model = tiny_model(tiny_config("vit_mae", image_size=32, patch_size=8), "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="image-feature-extraction")
    assert result.spec.input_names == ["pixel_values", "noise"]
    assert result.validation is not None
    assert result.validation.passed
    ort_model = onnxport.ORTModelForImageFeatureExtraction.from_pretrained(tmp_path / "out")
    pixels, noise = torch.randn(3, 3, 32, 32), torch.rand(3, 16)
    with torch.no_grad():
        expected = model(pixel_values=pixels, noise=noise)
    output = ort_model(pixel_values=pixels, noise=noise)
    torch.testing.assert_close(output.ids_restore, expected.ids_restore)
    torch.testing.assert_close(
        output.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=1e-4
    )
    drawn = [ort_model(pixel_values=pixels).ids_restore for _ in range(2)]
    assert drawn[0].shape == (3, 16)
    assert not torch.equal(drawn[0], drawn[1])  # a fresh draw each call, like forward
    # A model that takes noise but does not mask at random (Hiera's bare model) gets none.
    hiera = tiny_model(tiny_config("hiera"), "feature-extraction")
    assert "noise" not in onnxport.get_onnx_config(hiera, "image-feature-extraction").input_names


def test_video_models_take_frames(tmp_path: Path) -> None:
    """VideoMAE and kin read (batch, frames, channels, height, width): 4-D example images
    failed in forward. Their frames are the config's count at its image size."""
    config = tiny_config("videomae", image_size=32, patch_size=8, num_frames=4)
    model = tiny_model(config, "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="image-feature-extraction")
    assert result.spec.input_templates["pixel_values"][1:] == (4, 3, 32, 32)
    assert result.validation is not None
    assert result.validation.passed
    frames = torch.randn(3, 4, 3, 32, 32)
    ort_model = onnxport.ORTModelForImageFeatureExtraction.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        expected = model(pixel_values=frames).last_hidden_state
    output = ort_model(pixel_values=frames).last_hidden_state
    torch.testing.assert_close(output, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("model_type", ["patchtst", "patchtsmixer"])
def test_time_series_models_take_a_window_of_past_values(model_type: str, tmp_path: Path) -> None:
    """PatchTST-style forecasters read (batch, context_length, channels) of past values."""
    model = tiny_model(tiny_config(model_type, num_input_channels=2), "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="feature-extraction")
    assert result.spec.input_names == ["past_values"]
    assert result.validation is not None
    assert result.validation.passed
    values = torch.randn(3, model.config.context_length, 2)
    ort_model = onnxport.ORTModelForFeatureExtraction.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        expected = model(past_values=values).last_hidden_state
    output = ort_model(past_values=values).last_hidden_state
    torch.testing.assert_close(output, expected, atol=1e-4, rtol=1e-4)


def test_decision_transformer_takes_a_trajectory(tmp_path: Path) -> None:
    """Its adapter names the trajectory's inputs; the graph runs another length and batch."""
    import onnxruntime as ort

    model = tiny_model(tiny_config("decision_transformer"), "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="feature-extraction")
    assert result.spec.input_names == [
        "states", "actions", "returns_to_go", "timesteps", "attention_mask"
    ]  # fmt: skip
    assert result.validation is not None
    assert result.validation.passed
    c, generator = model.config, torch.Generator().manual_seed(1)
    trajectory = {
        "states": torch.randn(1, 7, c.state_dim, generator=generator),
        "actions": torch.randn(1, 7, c.act_dim, generator=generator),
        "returns_to_go": torch.randn(1, 7, 1, generator=generator),
        "timesteps": torch.arange(7).unsqueeze(0),
        "attention_mask": torch.ones(1, 7, dtype=torch.long),
    }
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(None, {k: v.numpy() for k, v in trajectory.items()})
    got = dict(zip(names, outputs, strict=True))
    with torch.no_grad():
        expected = model(**trajectory)
    np.testing.assert_allclose(got["action_preds"], expected.action_preds.numpy(), atol=1e-4)


@pytest.mark.parametrize("model_type", ["encodec", pytest.param("dac", marks=pytest.mark.slow)])
def test_audio_codecs_take_samples_per_channel(model_type: str, tmp_path: Path) -> None:
    """Neural codecs read (batch, channels, samples); (batch, samples) failed in forward."""
    model = tiny_model(tiny_config(model_type), "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="feature-extraction")
    template = result.spec.input_templates["input_values"]
    assert len(template) == 3
    assert isinstance(template[1], int)
    assert result.validation is not None
    assert result.validation.passed


@pytest.mark.parametrize(
    ("task", "inputs"),
    [("image-classification", ["pixel_values"]), ("feature-extraction", ["inputs"])],
)
def test_perceiver_takes_what_its_head_reads(task: str, inputs: list[str], tmp_path: Path) -> None:
    """Perceiver names its main input `inputs` ("anything"): its image head also takes
    pixel_values, its bare model embeddings as they are; the text path refused both."""
    model = tiny_model(tiny_config("perceiver"), task)
    result = onnxport.export(model, tmp_path / "out", task=task)
    assert result.spec.input_names == inputs
    assert result.validation is not None
    assert result.validation.passed


def test_tasks_without_a_pipeline_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="no pipeline for 'masked-im'"):
        onnxport.pipeline("masked-im", model=tmp_path)


def test_image_pipeline_without_a_processor_says_what_to_do(tmp_path: Path) -> None:
    model = tiny_model(tiny_config("vit", image_size=32, patch_size=8), "image-classification")
    folder = _export(model, "image-classification", tmp_path / "vit")
    with pytest.raises(onnxport.errors.ORTModelError, match=r"image_processor=\.\.\. explicitly"):
        onnxport.pipeline("image-classification", model=folder)


@pytest.mark.slow  # ~40-90 s; `make test-slow`
def test_probing_image_sizes_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    # Swin shrinks its attention window to a small image it is shown and keeps it: the
    # size probe must run on a copy, or the model no longer runs at its own size.
    model = tiny_model("swin", "image-classification")
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits
    result = onnxport.export(model, tmp_path / "swin", task="image-classification")
    assert result.validation is not None
    assert result.validation.passed
    assert result.spec.input_templates["pixel_values"] == ("batch_size", 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixels).logits, expected)


@pytest.mark.slow  # ~40-90 s; `make test-slow`
def test_image_size_is_fixed_when_the_graph_does_not_hold_at_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # DINOv2 with registers runs at any size in PyTorch, but the captured graph keeps the
    # traced size of its interpolated position embeddings: export at the config's size.
    model = tiny_model("dinov2_with_registers", "image-classification")
    with caplog.at_level("WARNING", logger="onnxport.exporters.api"):
        result = onnxport.export(model, tmp_path / "dino", task="image-classification")
    assert result.validation is not None
    assert result.validation.passed
    size = model.config.image_size
    assert result.spec.input_templates["pixel_values"] == ("batch_size", 3, size, size)
    assert "does not hold at other image sizes" in caplog.text
    folder = tmp_path / "dino"
    pixels = torch.randn(3, 3, size, size)
    output = onnxport.ORTModelForImageClassification.from_pretrained(folder)(pixel_values=pixels)
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits
    torch.testing.assert_close(output.logits, expected, atol=1e-4, rtol=1e-4)


def test_pose_estimation_matches_pytorch(tmp_path: Path) -> None:
    # ViTPose (top-down): the processor crops each person box; heatmaps per crop.
    model = tiny_model("vitpose", "pose-estimation")
    processor = transformers.VitPoseImageProcessor()
    folder = _export(model, "pose-estimation", tmp_path / "vitpose", processor=processor)
    image = _images(1, (120, 90))[0]
    boxes = [[[10.0, 5.0, 40.0, 80.0], [50.0, 20.0, 30.0, 60.0], [0.0, 0.0, 90.0, 120.0]]]
    inputs = processor(image, boxes=boxes, return_tensors="pt")
    ort_model = onnxport.ORTModelForPoseEstimation.from_pretrained(folder)
    output = ort_model(**inputs)
    with torch.no_grad():
        expected = model(**inputs)
    assert type(output).__name__ == type(expected).__name__
    torch.testing.assert_close(output.heatmaps, expected.heatmaps, atol=1e-4, rtol=1e-4)
    ours = processor.post_process_pose_estimation(output, boxes=boxes)
    reference = processor.post_process_pose_estimation(expected, boxes=boxes)
    for got, want in zip(ours[0], reference[0], strict=True):
        torch.testing.assert_close(got["keypoints"], want["keypoints"], atol=1e-3, rtol=1e-3)


def test_vits_text_to_audio_samples_like_pytorch_and_agrees_without_noise(tmp_path: Path) -> None:
    model = tiny_model("vits", "text-to-audio")
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz '")}))
    tokenizer = transformers.VitsTokenizer(str(vocab), phonemize=False)
    folder = _export(model, "text-to-audio", tmp_path / "vits", tokenizer=tokenizer)
    ort_model = onnxport.ORTModelForTextToWaveform.from_pretrained(folder)
    assert {"noise_scale", "noise_scale_duration"} <= set(ort_model.input_names)
    inputs = tokenizer(["hello world", "a cat"], return_tensors="pt", padding=True)
    silent = {"noise_scale": 0.0, "noise_scale_duration": 0.0}
    output = ort_model(**inputs, **silent)
    model.noise_scale = model.noise_scale_duration = 0.0
    with torch.no_grad():
        expected = model(**inputs)
    torch.testing.assert_close(output.sequence_lengths, expected.sequence_lengths)
    torch.testing.assert_close(output.waveform, expected.waveform, atol=1e-4, rtol=1e-4)
    # The pipeline (transformers' own over the ORT model) gives PyTorch's speech.
    ours = onnxport.pipeline("text-to-audio", model=folder)("hello world", forward_params=silent)
    reference = transformers.pipeline("text-to-audio", model=model, tokenizer=tokenizer)(
        "hello world"
    )
    assert ours["sampling_rate"] == reference["sampling_rate"]
    np.testing.assert_allclose(ours["audio"], reference["audio"], atol=1e-4)
    # The torch-free pipeline (what a slim container runs) gives the same speech.
    speak = onnxport.pipeline("text-to-audio", model=folder, backend="numpy")
    slim = speak(["hello world", "a cat"], forward_params=silent)
    assert slim[0]["sampling_rate"] == reference["sampling_rate"]
    np.testing.assert_allclose(slim[0]["audio"], reference["audio"], atol=1e-4)
    assert slim[1]["audio"].ndim == 1
    # Without scales the config's are used: the graph samples, as PyTorch does.
    lengths = {tuple(ort_model(**inputs).sequence_lengths.tolist()) for _ in range(4)}
    assert len(lengths) > 1


def test_grounding_dino_detections_match_pytorch(tmp_path: Path) -> None:
    # Open-vocabulary detection: boxes for phrases of free text, post-processed by the
    # processor (which reads the input_ids the model hands back).
    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    config = tiny_config("grounding-dino", tokenizer=tokenizer, num_queries=10, init_std=0.2)
    model = tiny_model(config, "zero-shot-object-detection")
    images = transformers.GroundingDinoImageProcessorPil(size={"height": 224, "width": 224})
    processor = transformers.GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer)
    folder = _export(model, "zero-shot-object-detection", tmp_path / "gd", processor=processor)
    ort_model = onnxport.ORTModelForZeroShotObjectDetection.from_pretrained(folder)
    pictures = _images(2, (60, 80))
    inputs = processor(
        images=pictures, text=["a cat. a remote.", "a dog."], return_tensors="pt", padding=True
    )
    output = ort_model(**inputs)
    with torch.no_grad():
        expected = model(**inputs)
    assert type(output).__name__ == type(expected).__name__
    torch.testing.assert_close(output.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(output.pred_boxes, expected.pred_boxes, atol=1e-4, rtol=1e-4)
    sizes = [picture.size[::-1] for picture in pictures]
    ours = processor.post_process_grounded_object_detection(
        output, threshold=0.0, text_threshold=0.0, target_sizes=sizes
    )
    reference = processor.post_process_grounded_object_detection(
        expected, threshold=0.0, text_threshold=0.0, target_sizes=sizes
    )
    for got, want in zip(ours, reference, strict=True):
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-3, rtol=1e-3)
        assert got["text_labels"] == want["text_labels"]
