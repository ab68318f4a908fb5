# Images of the operator and the portal worker, from one build:
#   make docker-build IMG=REGISTRY/kafkasend/operator:TAG WORKER_IMG=REGISTRY/kafkasend/portal:TAG
# or by hand (then pass --build-arg VERSION=... REVISION=...):
#   docker build --target operator -t kafkasend/operator:TAG .
#   docker build --target portal   -t kafkasend/portal:TAG .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# make docker-build passes the version and revision of hack/version.sh.
ARG VERSION=dev
ARG REVISION=unknown
ENV CGO_ENABLED=0
RUN for b in manager portal kafkasend; do \
      go build -trimpath -ldflags "-s -w -X kafkasend.io/kafkasend/internal/version.Version=${VERSION} -X kafkasend.io/kafkasend/internal/version.Revision=${REVISION}" -o /out/$b ./cmd/$b; \
    done

FROM scratch AS operator
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]

FROM scratch AS portal
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/portal /portal
COPY --from=build /out/kafkasend /kafkasend
USER 65532:65532
ENTRYPOINT ["/portal"]
