// Reads the tokenizer files of a Hugging Face checkpoint directory: tokenizer.json (required),
// tokenizer_config.json and chat_template.jinja (optional). Every failure names the file and the fix.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { TokenizerError } from "./errors.ts";

export interface TokenizerFiles {
  tokenizerJson: unknown;
  /** tokenizer_config.json parsed, or `{}` when the checkpoint has none. */
  tokenizerConfig: unknown;
  /** chat_template.jinja, which newer transformers save instead of tokenizer_config's chat_template. */
  chatTemplate: string | null;
  tokenizerJsonPath: string;
  tokenizerConfigPath: string;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new TokenizerError(`cannot read ${path} (${reason}); check that it is a readable file`, {
      cause: err,
    });
  }
}

function readJson(path: string): unknown {
  const text = readText(path);
  if (text.startsWith("version https://git-lfs")) {
    throw new TokenizerError(
      `${path} is a Git LFS pointer, not the file itself; fetch it with \`git lfs pull\` or download the checkpoint again`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new TokenizerError(
      `${path} is not valid JSON (${reason}); the file may be truncated, download the checkpoint again`,
      { cause: err },
    );
  }
}

export function readTokenizerFiles(dir: string): TokenizerFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new TokenizerError(
      `model directory ${dir} does not exist or is not a directory; pass a checkpoint directory`,
    );
  }
  const tokenizerJsonPath = join(dir, "tokenizer.json");
  const tokenizerConfigPath = join(dir, "tokenizer_config.json");
  const chatTemplatePath = join(dir, "chat_template.jinja");
  if (!existsSync(tokenizerJsonPath)) {
    const sentencePiece = existsSync(join(dir, "tokenizer.model"))
      ? " The directory has only tokenizer.model (SentencePiece); convert it once with transformers:" +
        ` python -c "from transformers import AutoTokenizer as T; T.from_pretrained('${dir}').save_pretrained('${dir}')"`
      : " Copy tokenizer.json from the model's Hugging Face repository into the directory.";
    throw new TokenizerError(
      `${tokenizerJsonPath} not found: kiln needs the Hugging Face tokenizer.json.${sentencePiece}`,
    );
  }
  return {
    tokenizerJson: readJson(tokenizerJsonPath),
    tokenizerConfig: existsSync(tokenizerConfigPath) ? readJson(tokenizerConfigPath) : {},
    chatTemplate: existsSync(chatTemplatePath) ? readText(chatTemplatePath) : null,
    tokenizerJsonPath,
    tokenizerConfigPath,
  };
}
