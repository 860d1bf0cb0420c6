# The image of deploy/podcidr-ipam.yaml (linux/amd64: the standalone build is made for linux-x64).
#   docker build -t podcidr-ipam:0.1.0 .
# Two builds of the same source: the bundle runs the agent on this image's Node; the standalone
# build (Node inside) is what the init container installs into the node's /opt/cni/bin, since
# the node's runtime runs the plugin on the host, where there may be no Node.
FROM node:24-bookworm-slim AS build
# strip: the standalone build drops Node's debug symbols (a fifth of its size) when it can.
RUN apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run -s build && npm run -s build:standalone

FROM node:24-bookworm-slim
# The standalone build's Node links libatomic.so.1 (the node needs it too: apt-get install libatomic1).
RUN apt-get update && apt-get install -y --no-install-recommends libatomic1 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/podcidr-ipam /usr/local/bin/podcidr-ipam
COPY --from=build /src/bin/podcidr-ipam-standalone /usr/local/lib/podcidr-ipam/podcidr-ipam-standalone
RUN podcidr-ipam --version && /usr/local/lib/podcidr-ipam/podcidr-ipam-standalone --version
ENTRYPOINT ["/usr/local/bin/podcidr-ipam"]
CMD ["agent"]
