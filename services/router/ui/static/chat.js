// The playground's chat box for chat endpoints (task llm/v1/chat) and MLflow agents (agent/v1/chat, agent/v2/chat,
// agent/v1/responses): a conversation sent to POST /serving-endpoints/NAME/invocations (a ResponsesAgent's as its
// `input`), its answer streamed in as the server-sent events arrive.
import { apiStream } from './api.js';
import { append, clear, h, icon } from './dom.js';
import { badge } from './endpoint-state.js';
import { answerText, chatDelta } from './sse.js';

export function chatBox(name) {
  const messages = [];   // [{role, content}] sent so far, answers included
  let task = 'llm/v1/chat';
  const log = h('div', { class: 'chat-log', id: 'chat-log', 'aria-live': 'polite' },
    h('p', { class: 'muted center chat-empty' }, 'Say something to the model.'));
  const input = h('textarea', { class: 'input chat-input', id: 'chat-input', rows: 3, placeholder: 'Message (Enter sends, Shift+Enter for a new line)', 'aria-label': 'Message' });
  const system = h('input', { class: 'input', id: 'chat-system', placeholder: 'System prompt (optional)', 'aria-label': 'System prompt' });
  const stream = h('input', { type: 'checkbox', id: 'chat-stream', checked: true });
  const maxTokens = h('input', { type: 'number', class: 'input chat-max-tokens', id: 'chat-max-tokens', min: 1, value: '256', 'aria-label': 'Max tokens' });
  const send = h('button', { type: 'button', class: 'btn btn-primary', id: 'chat-send' }, icon('play'), 'Send');
  const meta = h('div', { class: 'response-meta', id: 'chat-meta' });

  function bubble(role, text) {
    const body = h('div', { class: 'chat-text' }, text);
    const node = h('div', { class: `chat-msg chat-${role}`, 'data-role': role }, h('div', { class: 'chat-role' }, role), body);
    const empty = log.querySelector('.chat-empty');
    if (empty) empty.remove();
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return body;
  }

  async function sendMessage() {
    const text = input.value.trim();
    if (!text || send.disabled) return;
    input.value = '';
    messages.push({ role: 'user', content: text });
    bubble('user', text);
    const answer = bubble('assistant', '');
    answer.classList.add('streaming');
    send.disabled = true;
    append(clear(meta), h('span', { class: 'spinner' }), ' Waiting for the first token…');
    const conversation = [...(system.value.trim() ? [{ role: 'system', content: system.value.trim() }] : []), ...messages];
    const limit = Number(maxTokens.value) || undefined;
    const body = task === 'agent/v1/responses' ? { input: conversation, max_output_tokens: limit, stream: stream.checked }
      : { messages: conversation, max_tokens: limit, stream: stream.checked };
    let reply = '';
    let chunks = 0;
    let usage = null;
    let failure = null;
    let result = null;
    try {
      result = await apiStream(`/serving-endpoints/${encodeURIComponent(name)}/invocations`, body, (chunk) => {
        const delta = chatDelta(chunk);
        if (delta.error) { failure = delta.error; return; }
        if (delta.text) { chunks += 1; reply += delta.text; answer.textContent = reply; log.scrollTop = log.scrollHeight; }
        if (delta.usage) usage = delta.usage;
        if (chunks === 1 && delta.text) append(clear(meta), badge('Streaming', 'info', { spinning: true }));
      });
      if (!result.streamed) {   // stream unchecked: one JSON answer
        reply = answerText(result.data) || JSON.stringify(result.data);
        usage = (result.data || {}).usage || null;
        answer.textContent = reply;
      }
    } catch (error) {
      failure = error.display || error.message;
    }
    answer.classList.remove('streaming');
    send.disabled = false;
    if (failure) {
      answer.classList.add('chat-error');
      answer.textContent = reply ? `${reply}\n\n${failure}` : failure;
      messages.pop();
      append(clear(meta), badge('Error', 'danger'));
      return;
    }
    messages.push({ role: 'assistant', content: reply });
    const servedBy = result.headers.get('served-model-name') || '';
    append(clear(meta), badge(`${result.status} OK`, 'success'),
      result.streamed ? h('span', { class: 'meta-item', id: 'chat-first-token' }, h('span', { class: 'muted' }, 'First token '), `${Math.round(result.firstEventMs ?? result.latencyMs)} ms`) : null,
      h('span', { class: 'meta-item', id: 'chat-latency' }, h('span', { class: 'muted' }, 'Latency '), `${Math.round(result.latencyMs)} ms`),
      result.streamed ? h('span', { class: 'meta-item', id: 'chat-chunks' }, h('span', { class: 'muted' }, 'Chunks '), String(chunks)) : null,
      usage ? h('span', { class: 'meta-item' }, h('span', { class: 'muted' }, 'Tokens '), `${usage.prompt_tokens ?? '?'} in · ${usage.completion_tokens ?? '?'} out`) : null,
      servedBy ? h('span', { class: 'meta-item', id: 'chat-served-by' }, h('span', { class: 'muted' }, 'Served by '), h('strong', {}, servedBy)) : null);
  }

  send.addEventListener('click', sendMessage);
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) { event.preventDefault(); sendMessage(); }
  });
  const reset = () => { messages.length = 0; append(clear(log), h('p', { class: 'muted center chat-empty' }, 'Say something to the model.')); clear(meta); };

  const element = h('section', { class: 'card chat', id: 'chat' },
    h('div', { class: 'card-header' }, h('h2', {}, 'Chat'), meta),
    system, log, input,
    h('div', { class: 'form-actions' },
      h('label', { class: 'toggle' }, stream, h('span', {}, 'Stream')),
      h('label', { class: 'toggle' }, h('span', { class: 'muted small' }, 'Max tokens'), maxTokens),
      h('button', { type: 'button', class: 'btn', id: 'chat-clear', onclick: reset }, 'New conversation'), send));
  return { element, disable() { send.disabled = true; }, useTask(value) { task = value; } };
}
