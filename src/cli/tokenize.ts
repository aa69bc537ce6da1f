// `kiln tokenize`: text → ids and tokens with the model's tokenizer.
import type { Command } from "commander";
import { Tokenizer } from "../tokenizer/tokenizer.ts";
import { defaultModelDir, modelDirArg } from "./args.ts";

export function registerTokenize(program: Command): void {
  program
    .command("tokenize")
    .description("tokenize text with a model's tokenizer")
    .option("--model <dir>", "checkpoint or engine directory (default: the bundled model)", modelDirArg)
    .requiredOption("--text <text>", "text to tokenize")
    .option("--no-special-tokens", "do not add special tokens (BOS)")
    .option("--json", 'print {"ids":[..],"tokens":[..]}')
    .action((f: { model?: string; text: string; specialTokens: boolean; json?: boolean }) => {
      const tok = Tokenizer.fromDir(f.model ?? defaultModelDir());
      const { ids, tokens } = tok.encode(f.text, { addSpecialTokens: f.specialTokens });
      if (f.json) {
        process.stdout.write(`${JSON.stringify({ ids, tokens })}\n`);
        return;
      }
      ids.forEach((id, i) => {
        process.stdout.write(`${String(id).padStart(8)}  ${JSON.stringify(tokens[i])}\n`);
      });
    });
}
