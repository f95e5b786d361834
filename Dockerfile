# syntax=docker/dockerfile:1
FROM node:24-bookworm-slim AS build
WORKDIR /opt/tern
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
COPY dashboard ./dashboard
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
WORKDIR /opt/tern
ENV NODE_ENV=production TERN_CONFIG=/etc/tern/tern.yaml NODE_OPTIONS=--max-old-space-size=1024
COPY --from=build /opt/tern/node_modules ./node_modules
COPY --from=build /opt/tern/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY config/tern.example.yaml /etc/tern/tern.yaml
RUN mkdir -p /var/spool/tern && chown node:node /var/spool/tern \
 && sed -i 's#^  dir: ./var/spool.*#  dir: /var/spool/tern#; s#^  listen: \["127.0.0.1:2525"\].*#  listen: ["0.0.0.0:2525"]#; s#^  listen: "127.0.0.1:8025".*#  listen: "0.0.0.0:8025"#' /etc/tern/tern.yaml
# The admin listener is on 0.0.0.0 here, so Tern refuses to start without a token: pass
# TERN_ADMIN_TOKEN (docker run -e) or set admin.token in a mounted config.
USER node
VOLUME ["/var/spool/tern"]
EXPOSE 2525 8025
# Readiness, so `docker ps` and an orchestrator see a full spool or a wedged webhook; a restart
# fixes neither, so don't restart on "unhealthy" alone (docs/operations.md, "Liveness and readiness").
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8025/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/tern.js"]
CMD ["start"]
