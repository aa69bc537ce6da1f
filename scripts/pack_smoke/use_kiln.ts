// TypeScript against the shipped declarations (dist/*.d.ts): typechecked, never run. The expected
// errors at the end fail the check if the types ever degrade to `any`.
import {
  BUNDLED_MODEL_DIR,
  type FinishReason,
  type GenerateOptions,
  type GenerationOutput,
  KILN_VERSION,
  KilnError,
  KvCacheExhaustedError,
  type LogitsProcessor,
  ModelRunner,
  type RunnerOptions,
  type SamplingConfig,
  type StepOutput,
  type StoppingCriteria,
  type TokenEvent,
} from "kiln";

const stopAtNewline: StoppingCriteria = {
  shouldStop: (sequence, _step) => sequence.text.endsWith("\n"),
};
const banFirstToken: LogitsProcessor = {
  process(logits, vocabSize, sequences) {
    for (let r = 0; r < sequences.length; r++) logits[r * vocabSize] = Number.NEGATIVE_INFINITY;
  },
};
const sampling: Partial<SamplingConfig> = { temperature: 0.8, topP: 0.95 };
const options: GenerateOptions = {
  ...sampling,
  maxNewTokens: 16,
  stoppingCriteria: [stopAtNewline],
  logitsProcessors: [banFirstToken],
};
const runnerOptions: RunnerOptions = { backend: "cpu", kvCache: { maxTokens: 4096 } };

export async function demo(): Promise<string> {
  const runner = ModelRunner.fromDir(BUNDLED_MODEL_DIR, runnerOptions);
  try {
    const outs: GenerationOutput[] = await runner.generate(["ROMEO:", { ids: [1, 2, 3] }], options);
    const reason: FinishReason = outs[0].finishReason;
    for await (const ev of runner.stream("JULIET:", options)) {
      const event: TokenEvent = ev;
      if (event.finishReason !== null) break;
    }
    const steps: AsyncGenerator<StepOutput> = runner.steps("KING:", { greedy: true });
    await steps.next();
    return `${KILN_VERSION} ${reason} ${outs[0].text}`;
  } catch (e) {
    if (e instanceof KvCacheExhaustedError || e instanceof KilnError) return e.message;
    throw e;
  } finally {
    runner.dispose();
  }
}

// @ts-expect-error: a misspelled option is a type error
export const misspelled: GenerateOptions = { maxNewToken: 4 };
// @ts-expect-error: types reached through other declaration files are typed too (an Encoding)
export const encoded: number[] = ModelRunner.fromDir("x").tokenizer.encode("hi");
// @ts-expect-error: generate's results are typed
export const notAString: string = (await ModelRunner.fromDir("x").generate("hi"))[0];
