// The one check every JSON endpoint makes of its body before reading fields.
import { HttpError } from "../http_errors.ts";

export function notAnObject(): HttpError {
  return new HttpError(400, "the request body must be a JSON object of request fields");
}
