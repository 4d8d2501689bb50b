// Used by the tests (tests/integration/test_validators.py): validates each token given as JSON on stdin
// ({"appliance", "package", "tokens": {name: token}}) and prints {name: "ok" | refusal code}.
import { UsageValidator } from "./index.mjs";

const input = JSON.parse(await new Promise((resolve) => {
  let data = "";
  process.stdin.on("data", (chunk) => (data += chunk)).on("end", () => resolve(data));
}));
const validator = new UsageValidator(input.appliance, input.package);
const results = {};
for (const [name, token] of Object.entries(input.tokens)) {
  try {
    await validator.validate(token);
    results[name] = "ok";
  } catch (error) {
    results[name] = error.code ?? `error: ${error.message}`;
  }
}
console.log(JSON.stringify(results));
