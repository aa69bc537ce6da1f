// kiln's version, recorded in every engine (a test checks it equals package.json's).
export const KILN_VERSION = "0.1.0";
