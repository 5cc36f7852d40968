// MediaMesh load test, endurance: 2,000 requests/s for 2 hours (at SCALE=1), with the
// sizing guide's endpoint mix and thresholds; see lib/mediamesh.js for the
// environment it reads.
//
//   k6 run -e BASE_URL=http://localhost:8080 -e EDITOR_TOKEN=$TOKEN compose/k6/endurance.js
//   k6 run -e SCALE=0.1 ...          # a tenth of the rate for a tenth of the time
import { scenarioOptions, setupData, traffic as mix, login as logins } from './lib/mediamesh.js';

export const options = scenarioOptions('endurance', 2000, 7200);

export function setup() {
  return setupData();
}

export function traffic(data) {
  mix(data);
}

export function login() {
  logins();
}
