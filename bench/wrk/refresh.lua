-- Refresh with rotation: every request spends a refresh token that an earlier answer returned.
-- BENCH_TOKENS names a file of starting refresh tokens, one per line (one chain each; more chains than
-- connections, so a chain is free whenever a connection wants one). BENCH_AUTH is the client's Basic header.
local tokens = {}
local auth = os.getenv("BENCH_AUTH")

function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if line ~= "" then table.insert(tokens, line) end
  end
end

function request()
  local token = table.remove(tokens, 1) or "no-chain-left"
  return wrk.format("POST", nil, {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then table.insert(tokens, token) end
end
