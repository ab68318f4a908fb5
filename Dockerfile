# Images of the operator and the portal worker, from one build:
#   docker build --target operator -t kafkasend/operator:TAG .
#   docker build --target portal   -t kafkasend/portal:TAG .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ENV CGO_ENABLED=0
RUN for b in manager portal kafkasend; do \
      go build -trimpath -ldflags "-s -w -X kafkasend.io/kafkasend/internal/version.Version=${VERSION}" -o /out/$b ./cmd/$b; \
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
