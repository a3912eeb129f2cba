-- DPoP requests (RFC 9449): each takes the next proof from BENCH_PROOFS (one per line, made before the run: a
-- proof works once). BENCH_MODE "refresh": POST the token endpoint, spending a refresh token an earlier answer
-- returned (BENCH_TOKENS: one starting token per chain, as refresh.lua) with the client's Basic header in
-- BENCH_AUTH. BENCH_MODE "userinfo": GET with BENCH_AUTH ("DPoP <access token>").
local proofs = {}
local next_proof = 1
local tokens = {}
local mode = os.getenv("BENCH_MODE")
local auth = os.getenv("BENCH_AUTH")

function init(args)
  for line in io.lines(os.getenv("BENCH_PROOFS")) do
    if line ~= "" then table.insert(proofs, line) end
  end
  if mode == "refresh" then
    for line in io.lines(os.getenv("BENCH_TOKENS")) do
      if line ~= "" then table.insert(tokens, line) end
    end
  end
end

function request()
  local proof = proofs[next_proof] or "no-proof-left"
  next_proof = next_proof + 1
  if mode == "refresh" then
    local token = table.remove(tokens, 1) or "no-chain-left"
    return wrk.format("POST", nil, {
      ["Authorization"] = auth,
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["DPoP"] = proof,
    }, "grant_type=refresh_token&refresh_token=" .. token)
  end
  return wrk.format("GET", nil, { ["Authorization"] = auth, ["DPoP"] = proof })
end

function response(status, headers, body)
  if mode == "refresh" then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then table.insert(tokens, token) end
  end
end
