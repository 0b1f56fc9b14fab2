// Preloaded into the TypeScript Stripe Sync Engine's process (`node --import`) to point its Stripe client
// at a local API base. The engine builds its client as `new Stripe(key, {apiVersion, appInfo, ...})` and
// offers no host option; the Stripe node SDK does (`host`, `port`, `protocol`). This adds them, from
// STRIPE_API_BASE (e.g. http://127.0.0.1:12111), to every Stripe client made in the process: the
// engine's and any other it makes. TS_ENGINE_DIR is where `npm install stripe-experiment-sync`
// ran; the SDK patched must be the very module file the engine imports (its ESM build).
import { existsSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const base = process.env.STRIPE_API_BASE
const engineDir = process.env.TS_ENGINE_DIR
if (base && engineDir) {
  const candidates = [
    path.join(engineDir, 'node_modules/stripe-experiment-sync/node_modules/stripe/esm/stripe.esm.node.js'),
    path.join(engineDir, 'node_modules/stripe/esm/stripe.esm.node.js'),
  ]
  const sdkFile = candidates.find((file) => existsSync(file))
  if (!sdkFile) throw new Error(`no Stripe node SDK under ${engineDir}/node_modules`)
  const { default: Stripe } = await import(pathToFileURL(sdkFile).href)
  const url = new URL(base)
  const propsFromConfig = Stripe.prototype._getPropsFromConfig
  Stripe.prototype._getPropsFromConfig = function (config) {
    return propsFromConfig.call(this, {
      ...config,
      host: url.hostname,
      port: url.port || (url.protocol === 'http:' ? '80' : '443'),
      protocol: url.protocol.replace(':', ''),
    })
  }
}
