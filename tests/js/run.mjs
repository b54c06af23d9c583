// Runs transformers.js on exported folders, as a Node user would: one JSON request file in,
// one JSON answer per case on stdout. Used by tests/test_transformers_js.py.
import { readFileSync } from 'node:fs';
import {
    env, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText, AutoModelForSeq2SeqLM,
    AutoModelForSpeechSeq2Seq, AutoTokenizer, Tensor, pipeline,
} from '@huggingface/transformers';

env.allowRemoteModels = false;
env.allowLocalModels = true;

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
env.localModelPath = request.root;

function int64(rows) {
    const data = BigInt64Array.from(rows.flat().map((v) => BigInt(v)));
    return new Tensor('int64', data, [rows.length, rows[0].length]);
}

function rowsOf(tensor) {
    const [batch, length] = tensor.dims;
    const flat = Array.from(tensor.data, Number);
    return Array.from({ length: batch }, (_, i) => flat.slice(i * length, (i + 1) * length));
}

const answers = [];
for (const c of request.cases) {
    const options = { dtype: c.dtype ?? 'fp32', device: 'cpu' };
    if (c.kind === 'encoder') {
        const model = await AutoModel.from_pretrained(c.name, options);
        const out = await model({ input_ids: int64(c.input_ids), attention_mask: int64(c.attention_mask),
            ...(c.token_type_ids ? { token_type_ids: int64(c.token_type_ids) } : {}) });
        const hidden = out.last_hidden_state;
        answers.push({ dims: hidden.dims, data: Array.from(hidden.data) });
    } else if (c.kind === 'feature-extraction-pipeline') {
        const extractor = await pipeline('feature-extraction', c.name, options);
        const out = await extractor(c.texts, { pooling: 'mean', normalize: true });
        answers.push({ dims: out.dims, data: Array.from(out.data) });
    } else if (c.kind === 'decoder' || c.kind === 'seq2seq') {
        const Model = c.kind === 'decoder' ? AutoModelForCausalLM : AutoModelForSeq2SeqLM;
        const model = await Model.from_pretrained(c.name, options);
        const out = await model.generate({
            input_ids: int64(c.input_ids), attention_mask: int64(c.attention_mask),
            max_new_tokens: c.max_new_tokens, do_sample: false,
        });
        answers.push({ sequences: rowsOf(out) });
    } else if (c.kind === 'speech') {
        const model = await AutoModelForSpeechSeq2Seq.from_pretrained(c.name, options);
        const features = new Tensor('float32', Float32Array.from(c.input_features.flat(2)), c.dims);
        const out = await model.generate({ input_features: features, max_new_tokens: c.max_new_tokens, do_sample: false });
        answers.push({ sequences: rowsOf(out) });
    } else if (c.kind === 'vision-language') {
        const model = await AutoModelForImageTextToText.from_pretrained(c.name, options);
        const pixel_values = new Tensor('float32', Float32Array.from(c.pixel_values.flat(Infinity)), c.dims);
        const out = await model.generate({
            input_ids: int64(c.input_ids), attention_mask: int64(c.attention_mask), pixel_values,
            max_new_tokens: c.max_new_tokens, do_sample: false,
        });
        answers.push({ sequences: rowsOf(out) });
    } else if (c.kind === 'tokenizer') {
        const tokenizer = await AutoTokenizer.from_pretrained(c.name);
        answers.push({ input_ids: c.texts.map((t) => tokenizer.encode(t)) });
    } else {
        throw new Error(`unknown case kind ${c.kind}`);
    }
}
process.stdout.write(JSON.stringify(answers));
