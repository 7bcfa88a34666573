# walbridge: build on the official Node.js 26 (LTS) image, run with production dependencies only.
# The major is the one of package.json's engines and scripts/node-lts.sh, which the tests run on.
FROM node:26-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:26-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Test-only PostgreSQL binaries are optional dependencies, and dev tools dev dependencies: neither is installed here.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080
# node directly (not npm start) so SIGTERM reaches the daemon and it stops cleanly; with the
# heap flags of package.json's start script. The limit: V8 otherwise lets garbage grow the heap
# well past what the daemon keeps (a 1M-row transaction: 330 MB resident without it, under
# 256 MB with it). The growing factor: under a 192 MB limit V8 collects the whole heap each time
# it grows by a third, about five times a second while draining a backlog (half the daemon's CPU
# there); letting it double first halves the collections' cost (README, "Performance").
CMD ["node", "--max-old-space-size=192", "--heap-growing-percent=100", "dist/daemon.js"]
