# syntax=docker/dockerfile:1
# Signalman's image: a build stage with the dev dependencies (TypeScript), and a runtime stage with the
# production dependencies only, the compiled JavaScript and the files the gateway reads at run time.
# test/deploy/image.test.ts replays the runtime stage on a plain machine (same files, the same `npm ci`, the
# same CMD) and sends it a chat request, so a runtime need on a dev dependency fails CI, not a deploy.

# Node 24: the LTS line these dependencies are tested on beside Node 20 (package.json engines: >=20.18.1).
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
# The lockfile and .npmrc first, so the dependency layer is cached until they change. .npmrc skips
# onnxruntime-node's install script (it would download GPU binaries; the CPU ones ship in the package).
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# tsconfig also includes bench/, which is not copied: tsc compiles what it finds, src/ -> dist/src/.
RUN npm run build

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# No lifecycle script needs a dev dependency (there is no `prepare`): this is the whole production install.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY configs ./configs
COPY routers ./routers
COPY embedders ./embedders
COPY ui ./ui
USER node
EXPOSE 8080
# Ready = config loaded and serving; node's own fetch, so the image needs no curl or wget.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (drains, flushes telemetry, exits 0); no shell between.
# Config: SIGNALMAN_CONFIG=/path/to/mounted.yaml (default: the embedded demo), REDIS_URL, and backend keys by
# the env vars each backend names (api_key_env).
CMD ["node", "dist/src/cli/main.js", "serve"]
