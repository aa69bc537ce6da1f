// The builder's pass pipeline over a network: model definition in, execution plan out.

import type { BuildConfig } from "../engine/build_config.ts";
import type { Network } from "../models/network.ts";
import { fuseAddRmsNorm } from "./passes/fuse_add_norm.ts";
import { fuseGatedAct } from "./passes/fuse_gated_act.ts";
import { type CanFuse, fuseSiblingLinears } from "./passes/fuse_linears.ts";

/** `canFuse` says which sibling linears' weights can be stacked (all, unless the checkpoint is pre-quantized). */
export function optimize(net: Network, build: BuildConfig, canFuse?: CanFuse): Network {
  if (!build.fuse) return net;
  return fuseAddRmsNorm(fuseGatedAct(fuseSiblingLinears(net, canFuse)));
}
