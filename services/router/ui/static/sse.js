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

// What one decoded chunk adds to a chat answer: {text, finish, usage, error} (OpenAI's chunk shape).
export function chatDelta(chunk) {
  if (chunk && chunk.error) return { text: '', error: chunk.error.message || JSON.stringify(chunk.error) };
  const choice = ((chunk && chunk.choices) || [])[0] || {};
  return { text: (choice.delta && choice.delta.content) || '', finish: choice.finish_reason || null, usage: (chunk && chunk.usage) || null };
}
