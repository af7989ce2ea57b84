// Drive a running hl_notebook server through the official v4 TypeScript SDK (npm `humanloop@0.5.36`).
//
// Why: the server claims wire compatibility with both Konfig-generated v4 SDKs; this is the
// TypeScript one, run by Node against a fresh server (see test_sdk_ts_conformance.py), printing one
// JSON report on stdout that the pytest side asserts on. It uses the SDK's public API only, plus
// two read-only observations:
//
// * every HTTP exchange, by wrapping `globalThis.fetch` before the SDK loads (its fetch adapter
//   binds `fetch` at import): the request's headers and JSON body as the SDK serialised them (to
//   see the provider keys it injects and the headers it sends), the response's status, Content-Type
//   and Retry-After (the SDK's own response object drops the headers of a fetch response) and, of
//   an event stream, the last event as sent (a tee of the body; the SDK reads the other branch);
// * the SDK's own TypeScript declarations (`dist/models/*.d.ts`): the SDK never validates a body at
//   run time, so `conforms` checks each 2xx body against the declared response type: every
//   required field present and non-null, every value of its declared type (string, number,
//   boolean, object, array, string-literal enums, unions, intersections), recursively. An explicit
//   `null` under an optional field whose type does not admit null is allowed and reported under
//   `nulls` (spec §4/§6 send optional fields as null, as the hosted API did); a null anywhere
//   else fails.
//
// Environment: HL_BASE_URL (ends in /v4), HL_API_KEY, HL_TS_SDK_DIR (holds node_modules/humanloop),
// HL_FAKE_OPENAI and HL_FAKE_OPENAI_KEY (a fake OpenAI for provider failures: tests/fakes/openai_server.py),
// optional HL_SDK_PROJECT.
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const BASE_URL = process.env.HL_BASE_URL;
const API_KEY = process.env.HL_API_KEY;
const PROJECT = process.env.HL_SDK_PROJECT || "sdk-ts-conformance";
const CLIENT_OPENAI_KEY = "sk-client-level-canary"; // injected by the SDK into chat bodies (spec §1)
const CLIENT_MOCK_KEY = "client-level-mock-canary";

const report = { sdk_version: null, calls: {}, chat: {}, stream: {}, errors: {}, ids: {}, requests: {},
                 sent_provider_api_keys: {}, failures: {} };

// -- observe the wire -----------------------------------------------------------------------------
const exchanges = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const request = new Request(input, init);
  const text = request.method === "GET" ? "" : await request.clone().text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  const entry = { method: request.method, path: new URL(request.url).pathname.replace(/^.*\/v4/, ""),
                  headers: Object.fromEntries(request.headers.entries()), body };
  exchanges.push(entry);
  const response = await realFetch(request);
  entry.status = response.status;
  entry.content_type = response.headers.get("content-type");
  entry.retry_after = response.headers.get("retry-after");
  if (entry.content_type?.startsWith("text/event-stream")) { // keep the last SSE event the SDK was given
    const [mine, sdks] = response.body.tee();
    entry.read = (async () => {
      const text = await new Response(mine).text();
      const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
      entry.last_event = events.length ? JSON.parse(events.at(-1).slice(6)) : null;
    })();
    return new Response(sdks, { status: response.status, statusText: response.statusText, headers: response.headers });
  }
  return response;
};

const sdkRequire = createRequire(join(process.env.HL_TS_SDK_DIR, "package.json"));
const { Humanloop, HumanloopError } = sdkRequire("humanloop");
report.sdk_version = JSON.parse(readFileSync(sdkRequire.resolve("humanloop/package.json"), "utf8")).version;

// -- the SDK's declared types (dist/models/*.d.ts) -------------------------------------------------
const DECLS = loadDeclarations(join(dirname(sdkRequire.resolve("humanloop")), "models"));

function tokenize(source) {
  const text = source.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
  return text.match(/'[^']*'|"[^"]*"|[A-Za-z_$][\w$]*|\d+|\S/g) || [];
}

function loadDeclarations(dir) {
  const decls = {};
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".d.ts"))) {
    const tokens = tokenize(readFileSync(join(dir, file), "utf8"));
    let i = 0;
    const peek = () => tokens[i];
    const take = (expected) => {
      const token = tokens[i++];
      if (expected !== undefined && token !== expected) throw new Error(`${file}: expected ${expected}, got ${token}`);
      return token;
    };
    const members = () => {
      const fields = [];
      take("{");
      while (peek() !== "}") {
        if (peek() === "[") { // index signature [key: string]: T
          take("["); take(); take(":"); take(); take("]"); take(":");
          fields.push({ index: true, type: union() });
        } else {
          const raw = take();
          const name = raw.replace(/^['"]|['"]$/g, "");
          let optional = false;
          if (peek() === "?") { take("?"); optional = true; }
          take(":");
          fields.push({ name, optional, type: union() });
        }
        if (peek() === ";" || peek() === ",") take();
      }
      take("}");
      return { kind: "object", fields };
    };
    const primary = () => {
      const token = peek();
      if (token === "{") return members();
      if (token === "(") { take("("); const inner = union(); take(")"); return inner; }
      take();
      if (/^['"]/.test(token)) return { kind: "literal", value: token.slice(1, -1) };
      if (peek() === "<") { take("<"); const arg = union(); take(">"); return { kind: "array", of: arg, generic: token }; }
      return { kind: "ref", name: token };
    };
    const postfix = () => {
      let type = primary();
      while (peek() === "[" && tokens[i + 1] === "]") { take("["); take("]"); type = { kind: "array", of: type }; }
      return type;
    };
    const intersection = () => {
      const parts = [postfix()];
      while (peek() === "&") { take("&"); parts.push(postfix()); }
      return parts.length === 1 ? parts[0] : { kind: "all", parts };
    };
    function union() {
      if (peek() === "|") take("|");
      const parts = [intersection()];
      while (peek() === "|") { take("|"); parts.push(intersection()); }
      return parts.length === 1 ? parts[0] : { kind: "any", parts };
    }
    while (i < tokens.length) {
      const token = take();
      if (token === "import") { while (take() !== ";"); continue; }
      if (token === "interface") {
        const name = take();
        if (peek() === "extends") throw new Error(`${file}: interface ${name} extends, not supported`);
        decls[name] = members();
      } else if (token === "type") {
        const name = take();
        take("=");
        decls[name] = union();
      }
    }
  }
  return decls;
}

const acceptsNull = (type) => type.kind === "ref" && ["null", "any"].includes(type.name)
  || type.kind === "any" && type.parts.some(acceptsNull);

function conforms(value, type, path, errors, nulls) {
  const fail = (what) => errors.push(`${path}: ${what}, got ${JSON.stringify(value)?.slice(0, 120)}`);
  switch (type.kind) {
    case "literal":
      if (value !== type.value) fail(`expected '${type.value}'`);
      return;
    case "array":
      if (type.generic && type.generic !== "Array") throw new Error(`unsupported generic ${type.generic}`);
      if (!Array.isArray(value)) return fail("expected an array");
      value.forEach((item, n) => conforms(item, type.of, `${path}[${n}]`, errors, nulls));
      return;
    case "all":
      type.parts.forEach((part) => conforms(value, part, path, errors, nulls));
      return;
    case "any": {
      const tried = [];
      for (const part of type.parts) {
        const partErrors = [];
        const partNulls = [];
        conforms(value, part, path, partErrors, partNulls);
        if (partErrors.length === 0) { nulls.push(...partNulls); return; }
        tried.push(partErrors.slice(0, 2).join("; "));
      }
      errors.push(`${path}: matches no member of the union (${tried.join(" | ")})`);
      return;
    }
    case "object":
      if (typeof value !== "object" || value === null || Array.isArray(value)) return fail("expected an object");
      for (const field of type.fields) {
        if (field.index) {
          for (const [key, item] of Object.entries(value)) conforms(item, field.type, `${path}.${key}`, errors, nulls);
          continue;
        }
        const item = value[field.name];
        const where = `${path}.${field.name}`;
        if (item === undefined) {
          if (!field.optional) errors.push(`${where}: required, missing`);
        } else if (item === null && !acceptsNull(field.type)) {
          if (field.optional) nulls.push(field.name);
          else errors.push(`${where}: required, null`);
        } else {
          conforms(item, field.type, where, errors, nulls);
        }
      }
      return;
    case "ref":
      switch (type.name) {
        case "any": case "unknown": return;
        case "string": case "number": case "boolean":
          if (typeof value !== type.name) fail(`expected a ${type.name}`);
          return;
        case "object":
          if (typeof value !== "object" || value === null) fail("expected an object");
          return;
        case "null":
          if (value !== null) fail("expected null");
          return;
        default:
          if (!(type.name in DECLS)) throw new Error(`unknown type ${type.name}`);
          conforms(value, DECLS[type.name], path, errors, nulls);
      }
      return;
    default:
      throw new Error(`unknown type kind ${type.kind}`);
  }
}

function parseType(text) { // a response type as written in the SDK's method signatures
  const match = /^Array<(\w+)>$/.exec(text);
  return match ? { kind: "array", of: { kind: "ref", name: match[1] } } : { kind: "ref", name: text };
}

// -- helpers ----------------------------------------------------------------------------------------
async function step(name, body) {
  try {
    await body();
  } catch (error) {
    report.failures[name] = error instanceof HumanloopError
      ? `HumanloopError ${error.status}: ${JSON.stringify(error.responseBody)}\n${error.stack}`
      : String(error && error.stack || error);
  }
}

/** Record a call (status, declared type, conformance) and return its body. */
function check(name, declared, response, { paged = false } = {}) {
  const body = response.data; // an AxiosResponse, or a pagination Page (which keeps no status)
  const errors = [];
  const nulls = [];
  conforms(body, parseType(declared), "body", errors, nulls);
  report.calls[name] = { status: paged ? exchanges.at(-1).status : response.status, schema: declared,
                         validation: errors.length ? errors : "ok", nulls: [...new Set(nulls)].sort() };
  return body;
}

async function expectError(name, call) {
  try {
    await call();
    report.errors[name] = { exception: null };
  } catch (error) {
    report.errors[name] = error instanceof HumanloopError
      ? { exception: error.name, is_humanloop_error: true, status: error.status, body: error.responseBody,
          method: error.method, raw: name === "provider_429" ? error : undefined }
      : { exception: error && error.name, message: String(error && error.message) };
  }
}

function chatSummary(body) {
  const data = body.data;
  return { num_samples: body.num_samples, project_id: body.project_id, indices: data.map((d) => d.index),
           ids: data.map((d) => d.id), model_config_ids: data.map((d) => d.model_config_id),
           outputs: data.map((d) => d.output), raw_outputs: data.map((d) => d.raw_output),
           finish_reasons: data.map((d) => d.finish_reason), usage: body.usage,
           output_messages: data.map((d) => d.output_message),
           roles_sent: (data[0].messages || []).map((m) => m.role), provider_responses: body.provider_responses.length };
}

/** Read what the SDK's stream helper yields: one JSON object per chunk (concatenated, no separators). */
async function collect(name, response) {
  const exchange = exchanges.at(-1);
  const reader = response.data.getReader();
  const decoder = new TextDecoder();
  const events = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    events.push(JSON.parse(decoder.decode(value)));
  }
  const texts = {};
  const finals = {};
  for (const event of events) {
    texts[event.id] = (texts[event.id] || "") + event.output;
    if (event.finish_reason) finals[event.id] = event;
  }
  report.stream[name] = {
    status: response.status, content_type: exchange.content_type, accept_sent: exchange.headers.accept,
    stream_flag_sent: exchange.body.stream, events: events.length,
    event_keys: [...new Set(events.flatMap((e) => Object.keys(e)))].sort(),
    texts_by_id: texts,
    indices_by_id: Object.fromEntries(events.map((e) => [e.id, e.index])),
    config_by_id: Object.fromEntries(events.map((e) => [e.id, e.model_config_id])),
    project_ids: [...new Set(events.map((e) => e.project_id))],
    finish_reasons_by_id: Object.fromEntries(Object.entries(finals).map(([id, e]) => [id, e.finish_reason])),
    final_message_by_id: Object.fromEntries(Object.entries(finals).map(([id, e]) => [id, e.output_message])),
    finals_per_id: Object.fromEntries(Object.keys(texts).map((id) => [id, events.filter((e) => e.id === id && e.finish_reason).length])),
  };
}

// -- the run ------------------------------------------------------------------------------------------
const hl = new Humanloop({ apiKey: API_KEY, basePath: BASE_URL, openaiApiKey: CLIENT_OPENAI_KEY,
                           mockApiKey: CLIENT_MOCK_KEY });
const TEMPLATE = [{ role: "system", content: "You help {{audience}}." }];
const INPUTS = { audience: "testers" };
const MESSAGES = [{ role: "system" }, { role: "user", content: "hello {{audience}}" }]; // spec §4: content optional
const ids = report.ids;
const common = () => ({ messages: MESSAGES, inputs: INPUTS, num_samples: 2 });

async function main() {
  // management
  await step("projects.create", async () => {
    ids.project = check("projects.create", "ProjectResponse", await hl.projects.create({ name: PROJECT })).id;
  });
  await step("projects.list", async () => {
    const page = await hl.projects.list({ size: 100 });
    const listed = check("projects.list", "PaginatedDataProjectResponse", page, { paged: true });
    report.project_names = listed.records.map((p) => p.name);
    report.projects_page = { page: listed.page, size: listed.size, total: listed.total, has_next: page.hasNext() };
  });
  await step("modelConfigs.register", async () => {
    const first = await hl.modelConfigs.register({ project: PROJECT, model: "sdk-a", name: "sdk-a", provider: "mock",
                                                  temperature: 0, chat_template: TEMPLATE });
    const second = await hl.modelConfigs.register({ project_id: ids.project, model: "sdk-b", name: "sdk-b",
                                                   provider: "mock", temperature: 0, max_tokens: -1, stop: ["\n\n"] });
    ids.config_a = check("modelConfigs.register", "ProjectConfigResponse", first).config.id;
    ids.config_b = check("modelConfigs.register (project_id)", "ProjectConfigResponse", second).config.id;
  });
  await step("modelConfigs.get", async () => {
    report.config_a = check("modelConfigs.get", "ModelConfigResponse", await hl.modelConfigs.get({ id: ids.config_a }));
  });
  await step("projects.listConfigs", async () => {
    const configs = check("projects.listConfigs", "Array<ProjectConfigResponse>",
                          await hl.projects.listConfigs({ id: ids.project }));
    report.project_config_ids = configs.map((c) => c.config.id);
    // HumanloopCustom's own shortcut to the same endpoint
    report.custom_list_config_ids = (await hl.listConfigs({ projectId: ids.project })).data.map((c) => c.config.id);
  });
  await step("experiments.create", async () => {
    const experiment = check("experiments.create", "ExperimentResponse", await hl.experiments.create({
      projectId: ids.project, name: "a-vs-b", positive_labels: [{ type: "action", value: "copy" }],
      config_ids: [ids.config_a, ids.config_b] }));
    ids.experiment = experiment.id;
    report.experiment_config_ids = (experiment.configs || []).map((c) => c.id);
  });
  await step("experiments.list", async () => {
    check("experiments.list", "Array<ExperimentResponse>", await hl.experiments.list({ projectId: ids.project }));
  });
  await step("projects.listDeployedConfigs", async () => {
    const deployed = check("projects.listDeployedConfigs", "Array<EnvironmentProjectConfigResponse>",
                           await hl.projects.listDeployedConfigs({ id: ids.project }));
    report.deployed_before = Object.fromEntries(deployed.map((d) => [d.environment_name, d.model_config_id ?? null]));
    ids.environment = deployed.find((d) => d.environment_name === "production").environment_id;
  });
  await step("projects.deployConfig", async () => {
    const after = check("projects.deployConfig", "Array<EnvironmentProjectConfigResponse>",
                        await hl.projects.deployConfig({ projectId: ids.project, config_id: ids.config_b,
                                                        environments: [{ id: ids.environment }] }));
    report.deployed_after = Object.fromEntries(after.map((d) => [d.environment_name, d.model_config_id ?? null]));
  });
  await step("projects.getActiveConfig", async () => {
    const active = check("projects.getActiveConfig", "GetModelConfigResponse",
                         await hl.projects.getActiveConfig({ id: ids.project, environment: "production" }));
    report.active_config_id = active.config.id;
  });
  await step("projects.get", async () => {
    const project = check("projects.get", "ProjectResponse", await hl.projects.get({ id: ids.project }));
    report.project_active_config_id = project.active_config?.config?.id ?? null;
  });

  // the four chat endpoints, non-streaming (spec §3)
  const inline = { model: "sdk-inline", provider: "mock", temperature: 0, chat_template: TEMPLATE };
  const calls = {
    chat: () => hl.chat({ project: PROJECT, model_config: inline, provider_api_keys: { mock: "per-call-mock-key" },
                          ...common() }),
    chatDeployed: () => hl.chatDeployed({ project_id: ids.project, environment: "production", ...common() }),
    chatExperiment: () => hl.chatExperiment({ experiment_id: ids.experiment, ...common() }),
    chatModelConfiguration: () => hl.chatModelConfiguration({ model_config_id: ids.config_a, ...common() }),
  };
  for (const [name, call] of Object.entries(calls)) {
    await step(name, async () => {
      const response = await call();
      report.chat[name] = chatSummary(check(name, "ChatResponse", response));
      const exchange = exchanges.at(-1);
      report.requests[name] = { path: exchange.path, content_type: exchange.content_type,
                                user_agent: exchange.headers["user-agent"], api_key_sent: exchange.headers["x-api-key"] === API_KEY };
      report.sent_provider_api_keys[name] = Object.fromEntries(Object.entries(exchange.body.provider_api_keys || {}).map(
        ([provider, key]) => [provider, key === CLIENT_OPENAI_KEY || key === CLIENT_MOCK_KEY ? "client-level" : "per-call"]));
    });
  }

  // streaming through HumanloopCustom's helpers (SSE parsed by eventsource-parser, spec §7)
  const streams = {
    chatStream: () => hl.chatStream({ project: PROJECT, model_config: inline, ...common() }),
    chatDeployedStream: () => hl.chatDeployedStream({ project_id: ids.project, environment: "production", ...common() }),
    chatExperimentStream: () => hl.chatExperimentStream({ experiment_id: ids.experiment, ...common() }),
    chatModelConfigurationStream: () => hl.chatModelConfigurationStream({ model_config_id: ids.config_a, ...common() }),
  };
  for (const [name, call] of Object.entries(streams)) {
    await step(name, async () => collect(name, await call()));
  }

  // logs: the chat calls above are stored (8 non-streamed + 8 streamed samples)
  await step("logs.list", async () => {
    const page = await hl.logs.list({ projectId: ids.project, size: 100 });
    const listed = check("logs.list", "PaginatedDataLogResponse", page, { paged: true });
    report.log_ids = listed.records.map((r) => r.id);
    report.logs_total = listed.total;
  });

  // feedback, and the experiment learning from it (issue 13)
  const experimentStats = async () => {
    const listed = (await hl.experiments.list({ projectId: ids.project })).data;
    const found = listed.find((e) => e.id === ids.experiment);
    return Object.fromEntries(found.configs.map((c) => [c.id, { trials_count: c.trials_count, mean: c.mean ?? null,
                                                               spread: c.spread ?? null, active: c.active }]));
  };
  await step("feedback", async () => {
    const [firstLog, secondLog] = report.chat.chatExperiment.ids;
    const one = check("feedback", "FeedbackSubmitResponse", await hl.feedback({
      type: "action", value: "copy", data_id: firstLog, user: "sdk@example.com", created_at: "2024-03-01T12:00:00Z" }));
    const many = check("feedback (list)", "FeedbackSubmitResponse", await hl.feedback([
      { type: "rating", value: "good", data_id: secondLog }, { type: "action", value: "share", data_id: secondLog }]));
    report.feedback = { one, many, logs: [firstLog, secondLog] };
  });
  await step("experiments.list (after feedback)", async () => {
    check("experiments.list (after feedback)", "Array<ExperimentResponse>",
          await hl.experiments.list({ projectId: ids.project }));
    report.feedback.stats = await experimentStats();
  });
  await step("experiments.sample", async () => {
    const sampled = check("experiments.sample", "GetModelConfigResponse",
                          await hl.experiments.sample({ experimentId: ids.experiment }));
    report.feedback.sampled = { config_id: sampled.config.id, experiment_id: sampled.experiment_id ?? null };
  });
  await step("feedback (unset)", async () => {
    check("feedback (unset)", "FeedbackSubmitResponse", await hl.feedback({
      type: "action", value: "share", data_id: report.feedback.logs[1], unset: true }));
    report.feedback.stats_after_unset = await experimentStats();
  });

  // errors: the SDK's HumanloopError with the status and the decoded JSON body
  await step("errors", async () => {
    const wrong = new Humanloop({ apiKey: "wrong-key", basePath: BASE_URL });
    await expectError("wrong_key", () => wrong.chatModelConfiguration({ model_config_id: ids.config_a,
                                                                        messages: MESSAGES, inputs: INPUTS }));
    await expectError("wrong_key_stream", () => wrong.chatModelConfigurationStream({ model_config_id: ids.config_a,
                                                                                     messages: MESSAGES, inputs: INPUTS }));
    await expectError("wrong_key_projects", () => wrong.projects.get({ id: ids.project }));
    await expectError("unknown_config", () => hl.chatModelConfiguration({ model_config_id: "config_doesnotexist000000000",
                                                                          messages: MESSAGES }));
    await expectError("unknown_config_stream", () => hl.chatModelConfigurationStream({
      model_config_id: "config_doesnotexist000000000", messages: MESSAGES }));
    await expectError("unknown_experiment", () => hl.chatExperiment({ experiment_id: "exp_doesnotexist000000000000",
                                                                      messages: MESSAGES }));
    await expectError("unknown_log", () => hl.feedback({ type: "rating", value: "good",
                                                         data_id: "data_doesnotexist00000000" }));
    // the SDK sends what it is given: a message without a role and a missing template variable
    await expectError("invalid_message", () => hl.chatModelConfiguration({ model_config_id: ids.config_a,
                                                                           messages: [{ content: "no role" }] }));
    await expectError("missing_input", () => hl.chatModelConfiguration({ model_config_id: ids.config_a,
                                                                         messages: MESSAGES, inputs: {} }));
    await expectError("missing_input_stream", () => hl.chatModelConfigurationStream({ model_config_id: ids.config_a,
                                                                                      messages: MESSAGES, inputs: {} }));
  });

  // provider failures through the OpenAI pass-through to the tests' fake OpenAI (HL_FAKE_OPENAI)
  const fake = (model) => ({ project: `${PROJECT}-upstream`, model_config: { model, provider: "openai",
                             other: { base_url: process.env.HL_FAKE_OPENAI } },
                             provider_api_keys: { openai: process.env.HL_FAKE_OPENAI_KEY },
                             messages: [{ role: "user", content: "hello there" }] });
  await step("provider errors", async () => {
    await expectError("provider_429", () => hl.chat(fake("fail-429")));
    const exchange = exchanges.at(-1);
    // on the wire, and what the SDK's error lets a user see of it
    report.errors.provider_429.retry_after_on_the_wire = exchange.status === 429 ? exchange.retry_after : undefined;
    report.errors.provider_429.error_fields = Object.keys(report.errors.provider_429.raw || {}).sort();
    delete report.errors.provider_429.raw;
  });
  await step("chatStream (error mid-stream)", async () => {
    await collect("chatStream (error mid-stream)", await hl.chatStream(fake("error-stream")));
    const exchange = exchanges.at(-1);
    await exchange.read;
    report.stream["chatStream (error mid-stream)"].error_event_on_the_wire = exchange.last_event;
  });
  await step("logs.list (failed calls)", async () => { // both failed calls are logged with their error
    const project = (await hl.projects.list({ size: 100 })).data.records.find((p) => p.name === `${PROJECT}-upstream`);
    const listed = check("logs.list (failed calls)", "PaginatedDataLogResponse",
                         await hl.logs.list({ projectId: project.id, size: 100 }), { paged: true });
    report.failed_log_errors = listed.records.map((r) => r.error);
  });
}

await main();
process.stdout.write(JSON.stringify(report));
