import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ConfigError } from "../../src/checkpoint/errors.ts";
import { parseHfConfig, readHfConfig } from "../../src/checkpoint/hf_config.ts";
import { llamaConfig, tempDir, writeConfig } from "./helpers.ts";

const SRC = "/ckpt/config.json";

/** parseHfConfig(raw) must throw a ConfigError whose message matches every regex and names the file. */
function assertConfigError(raw: unknown, ...res: RegExp[]): void {
  assert.throws(
    () => parseHfConfig(raw, SRC),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
      for (const re of res) assert.match(e.message, re);
      assert.ok(e.message.includes(SRC), `message should name the file: ${e.message}`);
      return true;
    },
  );
}

describe("parseHfConfig basics", () => {
  test("a Llama config normalizes to ModelConfig; unknown keys are ignored but kept in raw", () => {
    const raw = llamaConfig({ some_future_key: { x: 1 }, pad_token_id: 0 });
    const c = parseHfConfig(raw, SRC);
    assert.equal(c.architecture, "LlamaForCausalLM");
    assert.equal(c.modelType, "llama");
    assert.equal(c.vocabSize, 32);
    assert.equal(c.hiddenSize, 16);
    assert.equal(c.intermediateSize, 40);
    assert.equal(c.numLayers, 2);
    assert.equal(c.numHeads, 4);
    assert.equal(c.numKvHeads, 2);
    assert.equal(c.headDim, 4);
    assert.equal(c.maxPositionEmbeddings, 128);
    assert.equal(c.normEps, 1e-5);
    assert.equal(c.hiddenAct, "silu");
    assert.deepEqual(c.rope, { theta: 10000, rotaryDim: 4, scaling: { type: "default" } });
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.attentionBias, false);
    assert.equal(c.mlpBias, false);
    assert.equal(c.slidingWindow, null);
    assert.equal(c.bosTokenId, 1);
    assert.deepEqual(c.eosTokenIds, [2]);
    assert.equal(c.padTokenId, 0);
    assert.equal(c.checkpointDtype, "float32");
    assert.equal(c.raw, raw);
  });

  test("defaults follow transformers' LlamaConfig when optional keys are absent", () => {
    const c = parseHfConfig(
      llamaConfig({
        num_key_value_heads: undefined,
        max_position_embeddings: undefined,
        rms_norm_eps: undefined,
        hidden_act: undefined,
        rope_theta: undefined,
        rope_scaling: undefined,
        tie_word_embeddings: undefined,
        bos_token_id: undefined,
        eos_token_id: undefined,
        torch_dtype: undefined,
        model_type: undefined,
      }),
      SRC,
    );
    assert.equal(c.modelType, "llama"); // from the architecture name
    assert.equal(c.numKvHeads, 4);
    assert.equal(c.maxPositionEmbeddings, 2048);
    assert.equal(c.normEps, 1e-6);
    assert.equal(c.hiddenAct, "silu");
    assert.equal(c.rope.theta, 10000);
    assert.equal(c.bosTokenId, 1);
    assert.deepEqual(c.eosTokenIds, [2]);
    assert.equal(c.checkpointDtype, null);
  });

  test("eos_token_id may be a list (Llama 3) or null; transformers 5 writes dtype", () => {
    assert.deepEqual(
      parseHfConfig(llamaConfig({ eos_token_id: [128001, 128008, 128009] }), SRC).eosTokenIds,
      [128001, 128008, 128009],
    );
    assert.deepEqual(parseHfConfig(llamaConfig({ eos_token_id: null }), SRC).eosTokenIds, []);
    const c = parseHfConfig(llamaConfig({ torch_dtype: undefined, dtype: "bfloat16" }), SRC);
    assert.equal(c.checkpointDtype, "bfloat16");
    assertConfigError(llamaConfig({ eos_token_id: [1, "2"] }), /field "eos_token_id"/, /got \[1,"2"\]/);
  });

  test("layer_norm_eps / layer_norm_epsilon stand in for rms_norm_eps", () => {
    assert.equal(
      parseHfConfig(llamaConfig({ rms_norm_eps: undefined, layer_norm_eps: 1e-4 }), SRC).normEps,
      1e-4,
    );
    const c = parseHfConfig(llamaConfig({ rms_norm_eps: undefined, layer_norm_epsilon: 2e-5 }), SRC);
    assert.equal(c.normEps, 2e-5);
  });

  test("Qwen3: explicit head_dim different from hidden_size / num_attention_heads", () => {
    const raw = llamaConfig({
      architectures: ["Qwen3ForCausalLM"],
      model_type: "qwen3",
      hidden_size: 1024,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      head_dim: 128,
      rope_theta: 1000000,
      tie_word_embeddings: true,
    });
    const c = parseHfConfig(raw, SRC);
    assert.equal(c.headDim, 128);
    assert.equal(c.rope.rotaryDim, 128);
    assert.equal(c.rope.theta, 1000000);
    assert.equal(c.tieWordEmbeddings, true);
  });

  test("sliding window: Mistral uses it; Qwen2/Qwen3 only with use_sliding_window", () => {
    const mistral = { architectures: ["MistralForCausalLM"], model_type: "mistral" };
    assert.equal(parseHfConfig(llamaConfig({ ...mistral, sliding_window: 4096 }), SRC).slidingWindow, 4096);
    assert.equal(parseHfConfig(llamaConfig({ ...mistral, sliding_window: null }), SRC).slidingWindow, null);
    const qwen2 = { architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", sliding_window: 32768 };
    assert.equal(
      parseHfConfig(llamaConfig({ ...qwen2, use_sliding_window: false }), SRC).slidingWindow,
      null,
    );
    assert.equal(
      parseHfConfig(llamaConfig({ ...qwen2, use_sliding_window: true }), SRC).slidingWindow,
      32768,
    );
    assertConfigError(llamaConfig({ ...mistral, sliding_window: 0 }), /field "sliding_window"/, /got 0/);
  });

  test("partial_rotary_factor sets rotaryDim; an odd result is rejected", () => {
    const c = parseHfConfig(llamaConfig({ hidden_size: 64, partial_rotary_factor: 0.5 }), SRC);
    assert.equal(c.rope.rotaryDim, 8); // head_dim 16 × 0.5
    assertConfigError(
      llamaConfig({ hidden_size: 24, partial_rotary_factor: 0.5 }),
      /field "partial_rotary_factor"/,
      /head_dim 6 × 0.5 gives 3 rotary dims, which must be even/,
    );
  });
});

describe("parseHfConfig errors", () => {
  for (const field of [
    "architectures",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
  ]) {
    test(`missing required field ${field}`, () => {
      assertConfigError(
        llamaConfig({ [field]: undefined }),
        new RegExp(`field "${field}": required field is missing`),
      );
    });
  }

  test("wrong types and out-of-range values name the field, the value and the file", () => {
    assertConfigError(
      llamaConfig({ hidden_size: "16" }),
      /field "hidden_size": must be a positive integer, got "16" \(string\)/,
    );
    assertConfigError(
      llamaConfig({ vocab_size: -3 }),
      /field "vocab_size": must be a positive integer, got -3/,
    );
    assertConfigError(llamaConfig({ num_hidden_layers: 2.5 }), /field "num_hidden_layers".*got 2.5/);
    assertConfigError(
      llamaConfig({ rms_norm_eps: Number.NaN }),
      /field "rms_norm_eps": must be a positive number, got NaN/,
    );
    assertConfigError(
      llamaConfig({ tie_word_embeddings: "yes" }),
      /field "tie_word_embeddings": must be true or false/,
    );
    assertConfigError(llamaConfig({ architectures: [] }), /field "architectures": must be a non-empty array/);
    assertConfigError(llamaConfig({ architectures: "LlamaForCausalLM" }), /field "architectures"/);
    assertConfigError(llamaConfig({ hidden_size: null }), /field "hidden_size": required field is null/);
    assertConfigError([1, 2], /must be a JSON object/);
  });

  test("inconsistent head counts", () => {
    assertConfigError(
      llamaConfig({ num_key_value_heads: 3 }),
      /field "num_key_value_heads": 3 does not divide num_attention_heads 4/,
    );
    assertConfigError(
      llamaConfig({ hidden_size: 18 }),
      /field "head_dim": is not set and hidden_size 18 is not divisible by num_attention_heads 4/,
    );
  });

  test("unsupported hidden_act lists the supported ones", () => {
    assertConfigError(
      llamaConfig({ hidden_act: "swish2" }),
      /field "hidden_act": activation "swish2" is not supported; kiln supports silu, gelu, gelu_pytorch_tanh, gelu_new, relu/,
    );
  });
});

describe("RoPE config, both generations", () => {
  const llama3 = {
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 8192,
  };
  const expectedLlama3 = {
    theta: 500000,
    rotaryDim: 4,
    scaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    },
  };

  test("llama3 from rope_theta + rope_scaling and from rope_parameters give equal RopeConfig", () => {
    const hub = parseHfConfig(
      llamaConfig({ rope_theta: 500000, rope_scaling: { rope_type: "llama3", ...llama3 } }),
      SRC,
    );
    const v5 = parseHfConfig(
      llamaConfig({
        rope_theta: undefined,
        rope_scaling: undefined,
        rope_parameters: { rope_type: "llama3", rope_theta: 500000, ...llama3 },
      }),
      SRC,
    );
    assert.deepEqual(hub.rope, expectedLlama3);
    assert.deepEqual(v5.rope, hub.rope);
  });

  test("default RoPE in both generations; rope_parameters without rope_theta takes the top-level one", () => {
    const hub = parseHfConfig(llamaConfig({ rope_theta: 1e6 }), SRC);
    const v5 = parseHfConfig(
      llamaConfig({ rope_theta: undefined, rope_parameters: { rope_type: "default", rope_theta: 1e6 } }),
      SRC,
    );
    const mixed = parseHfConfig(
      llamaConfig({ rope_theta: 1e6, rope_parameters: { rope_type: "default" } }),
      SRC,
    );
    assert.deepEqual(hub.rope, { theta: 1e6, rotaryDim: 4, scaling: { type: "default" } });
    assert.deepEqual(v5.rope, hub.rope);
    assert.deepEqual(mixed.rope, hub.rope);
  });

  test("linear, with the legacy `type` key", () => {
    const c = parseHfConfig(llamaConfig({ rope_scaling: { type: "linear", factor: 2 } }), SRC);
    assert.deepEqual(c.rope.scaling, { type: "linear", factor: 2 });
    const v5 = parseHfConfig(
      llamaConfig({ rope_parameters: { rope_type: "linear", factor: 2, rope_theta: 10000 } }),
      SRC,
    );
    assert.deepEqual(v5.rope, c.rope);
  });

  test("dynamic NTK scales against max_position_embeddings, as transformers does", () => {
    const c = parseHfConfig(llamaConfig({ rope_scaling: { rope_type: "dynamic", factor: 4 } }), SRC);
    assert.deepEqual(c.rope.scaling, { type: "dynamic", factor: 4, originalMaxPositionEmbeddings: 128 });
  });

  test("unsupported rope types name the type and list the supported ones", () => {
    for (const type of ["yarn", "longrope"]) {
      assertConfigError(
        llamaConfig({ rope_scaling: { rope_type: type, factor: 4 } }),
        new RegExp(`field "rope_scaling.rope_type": RoPE type "${type}" is not supported`),
        /kiln supports default, linear, dynamic, llama3/,
      );
    }
    assertConfigError(
      llamaConfig({ rope_parameters: { rope_type: "yarn", rope_theta: 1e4, factor: 4 } }),
      /field "rope_parameters.rope_type": RoPE type "yarn"/,
    );
  });

  test("bad RoPE fields", () => {
    assertConfigError(
      llamaConfig({ rope_scaling: { factor: 2 } }),
      /field "rope_scaling.rope_type": required field is missing/,
    );
    assertConfigError(
      llamaConfig({ rope_scaling: { rope_type: "linear" } }),
      /field "rope_scaling.factor": required/,
    );
    assertConfigError(
      llamaConfig({ rope_scaling: { rope_type: "linear", factor: 0 } }),
      /"rope_scaling.factor".*got 0/,
    );
    const { original_max_position_embeddings: _, ...noOrig } = llama3;
    assertConfigError(
      llamaConfig({ rope_scaling: { rope_type: "llama3", ...noOrig } }),
      /field "rope_scaling.original_max_position_embeddings": required field is missing/,
    );
    assertConfigError(
      llamaConfig({ rope_scaling: { rope_type: "llama3", ...llama3, high_freq_factor: 1 } }),
      /field "rope_scaling.high_freq_factor": must be greater than low_freq_factor/,
    );
    assertConfigError(
      llamaConfig({ rope_theta: -1 }),
      /field "rope_theta": must be a positive number, got -1/,
    );
    assertConfigError(
      llamaConfig({ rope_scaling: "linear" }),
      /field "rope_scaling": must be an object or null/,
    );
  });
});

describe("readHfConfig", () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);

  test("reads dir/config.json", () => {
    writeConfig(dir, llamaConfig());
    assert.equal(readHfConfig(dir).hiddenSize, 16);
  });

  test("missing config.json → ConfigError naming the path", () => {
    const empty = join(dir, "nothing-here");
    assert.throws(
      () => readHfConfig(empty),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message.includes(join(empty, "config.json")) &&
        /does not exist/.test(e.message),
    );
  });

  test("config.json that is not JSON → ConfigError", () => {
    writeFileSync(join(dir, "config.json"), '{"hidden_size": 16,');
    assert.throws(
      () => readHfConfig(dir),
      (e: unknown) => e instanceof ConfigError && /config\.json: not valid JSON/.test(e.message),
    );
  });
});
