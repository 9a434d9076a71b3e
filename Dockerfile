# syntax=docker/dockerfile:1
# The tidemark image: a static Go binary on a small Alpine base (a shell and wget for
# healthchecks and debugging), running as an unprivileged user.
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tidemark ./cmd/tidemark

FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 10001 tidemark \
    && adduser -S -D -H -u 10001 -G tidemark tidemark
COPY --from=build /out/tidemark /usr/local/bin/tidemark
USER 10001:10001
EXPOSE 9464 9465
ENTRYPOINT ["/usr/local/bin/tidemark"]
CMD ["--help"]
