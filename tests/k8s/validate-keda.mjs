// Validates KEDA objects against KEDA's own CRD schema (@kubernetes-models/keda, generated from kedacore/keda's
// Go API types). Reads a JSON array of objects on stdin; prints "ok <kind>/<name>" per valid object, the errors
// otherwise, and exits 1 if any is invalid. Used by tests/test_k8s_chart.py.
import { readFileSync } from "node:fs";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";

const models = { ScaledObject, TriggerAuthentication };
let failed = false;
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = models[object.kind];
  if (!Model || object.apiVersion !== "keda.sh/v1alpha1") {
    console.log(`unknown ${object.apiVersion} ${name}`);
    failed = true;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`invalid ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
