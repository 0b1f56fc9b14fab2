// The TypeScript Stripe Sync Engine's processWebhook under N concurrent callers, over the signed deliveries
// of a JSONL file (benchmarks/peers/signed_events.py). Prints one JSON line: events/s and the process's
// CPU per event, after 200 warm-up deliveries. Run with ts_api_base.mjs preloaded, so that the account
// lookup the engine makes reaches the emulator:
//
//   STRIPE_API_BASE=http://127.0.0.1:PORT TS_ENGINE_DIR=/tmp/peers STRIPE_KEY=sk_test_... \
//     node --import ./benchmarks/peers/ts_api_base.mjs benchmarks/peers/ts_webhooks.mjs \
//     /tmp/peers /tmp/events.jsonl postgresql://postgres@127.0.0.1:5432/db 10 acct_<emulator's> \
//     whsec_benchmarkSigningSecret0000
//
// The database is migrated by the engine's own CLI first (`node .../dist/cli/index.js migrate`). QUIET=1
// gives the engine a logger that prints nothing (by default it logs every delivery).
import { readFileSync } from 'node:fs'

const [dir, file, url, callersArg, account, secret] = process.argv.slice(2)
const { StripeSync } = await import(dir + '/node_modules/stripe-experiment-sync/dist/index.js')
const items = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line))
const silent = { info () {}, warn () {}, error () {}, debug () {}, trace () {} }
const sync = new StripeSync({
  stripeSecretKey: process.env.STRIPE_KEY,
  stripeWebhookSecret: secret,
  stripeAccountId: account,
  poolConfig: { connectionString: url, max: 10 },
  ...(process.env.QUIET ? { logger: silent } : {}),
})
let next = 0
let failed = 0
let firstError = null
const warm = Math.min(200, items.length)
for (; next < warm; next++) {
  try { await sync.processWebhook(items[next].body, items[next].signature) } catch (e) { failed++; firstError ??= e }
}
const started = process.hrtime.bigint()
const cpuBefore = process.cpuUsage()
async function caller () {
  while (next < items.length) {
    const item = items[next++]
    try { await sync.processWebhook(item.body, item.signature) } catch (e) { failed++; firstError ??= e }
  }
}
await Promise.all(Array.from({ length: Number(callersArg) }, caller))
const seconds = Number(process.hrtime.bigint() - started) / 1e9
const cpu = process.cpuUsage(cpuBefore)
const events = items.length - warm
console.log(JSON.stringify({
  events, seconds, events_per_s: events / seconds, cpu_us_per_event: (cpu.user + cpu.system) / events,
  failed, first_error: firstError && String(firstError),
}))
process.exit(0)
