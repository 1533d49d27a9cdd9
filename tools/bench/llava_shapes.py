"""What the HF peers of tools/bench share: the published LLaVA-1.5 shapes as a random-init HF config and model."""
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

SHAPES = {
    "llava-1.5-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "llava-1.5-13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40),
}


def llava_config(shape):
    """LlavaConfig of a LLaVA-1.5 shape: CLIP ViT-L/14-336 tower (layer -2, CLS dropped), LLaMA of `shape`, SDPA."""
    text = LlamaConfig(vocab_size=32064, num_key_value_heads=SHAPES[shape]["num_attention_heads"],
                       max_position_embeddings=4096, **SHAPES[shape])
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=32000, pad_token_id=32001,
                      vision_feature_layer=-2, vision_feature_select_strategy="default")
    cfg._attn_implementation = "sdpa"
    return cfg


def random_model(shape):
    """A random-init HF LLaVA of `shape`, built straight on the GPU in bf16 (torch's default dtype stays bf16)."""
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        return LlavaForConditionalGeneration(llava_config(shape))
