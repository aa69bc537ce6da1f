// Feed-forward layers: GatedMLP (Llama family: down(act(gate(x)) * up(x))) and plain MLP (GPT family).
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { NetworkBuilder } from "../network_builder.ts";
import { linear } from "./linear.ts";

export function gatedMlp(
  nb: NetworkBuilder,
  x: string, // [T, hidden]
  names: { gate: string; up: string; down: string },
  bias: boolean,
): string /* [T, hidden] */ {
  const c: ModelConfig = nb.config;
  const gate = linear(nb, x, names.gate, c.hiddenSize, c.intermediateSize, bias); // [T, I]
  const up = linear(nb, x, names.up, c.hiddenSize, c.intermediateSize, bias); // [T, I]
  const h = nb.gatedAct(gate, up, c.intermediateSize, c.hiddenAct); // [T, I]
  return linear(nb, h, names.down, c.intermediateSize, c.hiddenSize, bias);
}

export function mlp(
  nb: NetworkBuilder,
  x: string, // [T, hidden]
  names: { fc: string; proj: string },
  bias: boolean,
): string /* [T, hidden] */ {
  const c: ModelConfig = nb.config;
  const h = linear(nb, x, names.fc, c.hiddenSize, c.intermediateSize, bias);
  const a = nb.act(h, c.intermediateSize, c.hiddenAct);
  return linear(nb, a, names.proj, c.intermediateSize, c.hiddenSize, bias);
}
