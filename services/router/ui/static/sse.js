// Server-sent events as Podium sends them (`data: <json>` events, a blank line after each, `data: [DONE]` last).

// Splits the text received so far into complete events' data and the unfinished rest: [[data, ...], rest].
export function splitEvents(buffer) {
  const events = [];
  const blocks = buffer.replace(/\r\n/g, '\n').split('\n\n');
  const rest = blocks.pop();   // after the last blank line: an event still arriving
  for (const block of blocks) {
    const data = block.split('\n').filter((line) => line.startsWith('data:')).map((line) => line.slice(5).replace(/^ /, ''));
    if (data.length) events.push(data.join('\n'));
  }
  return [events, rest];
}

// What one decoded chunk adds to a chat answer: {text, finish, usage, error}: OpenAI's chunk shape, or an MLflow
// agent's event (a ResponsesAgent's response.output_text.delta, a ChatAgent's {delta: {content}}).
export function chatDelta(chunk) {
  if (chunk && chunk.error) return { text: '', error: chunk.error.message || JSON.stringify(chunk.error) };
  if (chunk && chunk.type) return { text: chunk.type === 'response.output_text.delta' ? chunk.delta || '' : '' };
  if (chunk && !chunk.choices && chunk.delta && typeof chunk.delta === 'object') return { text: chunk.delta.content || '' };
  const choice = ((chunk && chunk.choices) || [])[0] || {};
  return { text: (choice.delta && choice.delta.content) || '', finish: choice.finish_reason || null, usage: (chunk && chunk.usage) || null };
}

// The text of a whole (not streamed) chat answer: a chat.completion, a ChatAgent's {messages}, a ResponsesAgent's
// {output}; null for anything else.
export function answerText(data) {
  if (!data || typeof data !== 'object') return null;
  if (Array.isArray(data.choices)) return ((data.choices[0] || {}).message || {}).content ?? null;
  if (Array.isArray(data.messages)) return (data.messages.filter((m) => m.role === 'assistant').pop() || {}).content ?? null;
  if (Array.isArray(data.output)) {
    return data.output.flatMap((item) => item.type === 'message' ? item.content || [] : [])
      .filter((part) => part.type === 'output_text').map((part) => part.text).join('') || null;
  }
  return null;
}
