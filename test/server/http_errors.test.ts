import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidArgumentError } from "../../src/errors.ts";
import { ExecutorShutDownError, QueueFullError } from "../../src/executor/errors.ts";
import { badField, errorAnswer, HttpError } from "../../src/server/http_errors.ts";

test("a field error is 400 with the field named", () => {
  const a = errorAnswer(badField("temperature", "temperature -1 is below 0; give 0–2"));
  assert.equal(a.status, 400);
  assert.deepEqual(a.body.error, {
    message: "temperature -1 is below 0; give 0–2",
    type: "invalid_request_error",
    param: "temperature",
    code: 400,
  });
  assert.equal(a.isBug, false);
});

test("a full queue is 429 with Retry-After; shutdown is 503; a KilnError is 400", () => {
  const q = errorAnswer(new QueueFullError(4));
  assert.equal(q.status, 429);
  assert.equal(q.headers["retry-after"], "1");
  assert.equal(q.body.error.type, "rate_limit_error");
  assert.equal(errorAnswer(new ExecutorShutDownError()).status, 503);
  assert.equal(errorAnswer(new InvalidArgumentError("bad")).status, 400);
  assert.equal(errorAnswer(new HttpError(404, "no model x", "not_found_error")).status, 404);
});

test("anything else is a bug: 500 without its message leaking", () => {
  const a = errorAnswer(new TypeError("cannot read properties of undefined (secret path)"));
  assert.equal(a.status, 500);
  assert.equal(a.isBug, true);
  assert.doesNotMatch(a.body.error.message, /secret/);
});
