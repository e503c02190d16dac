function t = ae_options_table()
%AE_OPTIONS_TABLE The wrappers' name-value options as Python declares them. GENERATED: do not edit.
%   T = AE_OPTIONS_TABLE() is a struct array, one element per option:
%     name     MATLAB name ('ChunkSeconds'; inputParser matches it case-insensitively)
%     flag     the command-line flag ('--chunk-seconds')
%     kind     'switch' | 'choice' | 'text' | 'name' (a file name, no folder) | 'path' (absolute when it
%              exists, else a preset name or hub id) | 'folder' (always made absolute) | 'number',
%              'integer' (with a bound: 'number>0', 'integer>=0', ...) | 'value' (Python checks it)
%     choices  1-by-K cell of char, the values of a 'choice' (else {})
%     default  Python's default where every script has the same one, else [] (the script's own)
%     wrapper  true: a shared flag, or a script's own option (B4's 'Vad', 'Score', ...), that the
%              wrappers taking it add with ae_add_options (checked by ae_check_option, sent as
%              FLAG VALUE by ae_cli_args, only when given); false: a model's or a shared stage's
%              option, sent as '--matlab-option NAME VALUE' and checked by Python
%   Written by python/audio_embeddings/docs_tables.py from matlab.WRAPPER_FLAGS and WRAPPER_KINDS,
%   the scripts' parsers, the scripts' hooks' declared options and every declared Option;
%   tests/test_generated.py fails when it is stale.
%   To rewrite it, from the repository root:
%     PYTHONPATH=python .venv/bin/python -m audio_embeddings.docs_tables --write
persistent table
if isempty(table)
    rows = {
        'Model',                   '--model',                     'path',       '',                         [],        true
        'OutputDir',               '--output-dir',                'folder',     '',                         [],        true
        'Basename',                '--basename',                  'name',       '',                         [],        true
        'ChunkSeconds',            '--chunk-seconds',             'number>0',   '',                         [],        true
        'ContextSeconds',          '--context-seconds',           'number>=0',  '',                         [],        true
        'Device',                  '--device',                    'choice',     'auto|cpu|cuda|mps',        'auto',    true
        'Dtype',                   '--dtype',                     'choice',     'float32|float16|bfloat16', 'float32', true
        'MatVersion',              '--mat-version',               'choice',     '5|7.3|auto',               'auto',    true
        'Channel',                 '--channel',                   'integer>=0', '',                         [],        true
        'Overwrite',               '--overwrite',                 'switch',     '',                         false,     true
        'Formats',                 '--formats',                   'text',       '',                         [],        true
        'AllowPipes',              '--allow-pipes',               'switch',     '',                         false,     true
        'Vad',                     '--vad',                       'choice',     'none|silero',              'none',    true
        'MinSpeechS',              '--min-speech-s',              'number>=0',  '',                         0.25,      true
        'MergeGapS',               '--merge-gap-s',               'number>=0',  '',                         0.3,       true
        'MaxSegmentS',             '--max-segment-s',             'number>=0',  '',                         30.0,      true
        'Score',                   '--score',                     'path',       '',                         [],        true
        'ScoreNorm',               '--score-norm',                'choice',     'none|asnorm',              'none',    true
        'Cohort',                  '--cohort',                    'path',       '',                         [],        true
        'CohortTopN',              '--top-n',                     'integer>0',  '',                         300,       true
        'Threshold',               '--threshold',                 'number',     '',                         [],        true
        'Metrics',                 '--metrics',                   'path',       '',                         [],        true
        'Layers',                  '--layers',                    'value',      '',                         [],        false
        'HopSeconds',              '--hop-seconds',               'value',      '',                         [],        false
        'Force10sec',              '--force_10sec',               'switch',     '',                         [],        false
        'Logits',                  '--logits',                    'switch',     '',                         [],        false
        'Spatial',                 '--spatial',                   'switch',     '',                         [],        false
        'TopK',                    '--top-k',                     'value',      '',                         [],        false
        'MinSeconds',              '--min-seconds',               'value',      '',                         [],        false
        'PartialWindow',           '--partial-window',            'value',      '',                         [],        false
        'Resampler',               '--resampler',                 'value',      '',                         [],        false
        'Codec',                   '--codec',                     'path',       '',                         [],        false
        'Stats',                   '--stats',                     'path',       '',                         [],        false
        'Layer',                   '--layer',                     'value',      '',                         [],        false
        'Codes',                   '--codes',                     'switch',     '',                         [],        false
        'Checkpoint',              '--checkpoint',                'path',       '',                         [],        false
        'NoTrimSilence',           '--no-trim-silence',           'switch',     '',                         [],        false
        'TargetRate',              '--target-rate-hz',            'value',      '',                         [],        false
        'TR',                      '--tr',                        'value',      '',                         [],        false
        'AlignStart',              '--align-start',               'value',      '',                         [],        false
        'AlignDuration',           '--align-duration',            'value',      '',                         [],        false
        'AlignMethod',             '--align-method',              'choice',     'lanczos|mean|nearest',     [],        false
        'HRF',                     '--hrf',                       'choice',     'spm|glover|none',          [],        false
        'Delays',                  '--delays',                    'value',      '',                         [],        false
        'Events',                  '--events',                    'path',       '',                         [],        false
        'EventsTier',              '--events-tier',               'value',      '',                         [],        false
        'NVolumes',                '--n-volumes',                 'value',      '',                         [],        false
        'BoldJson',                '--bold-json',                 'value',      '',                         [],        false
        'SliceTimeRef',            '--slice-time-ref',            'value',      '',                         [],        false
        'DummyScans',              '--dummy-scans',               'value',      '',                         [],        false
        'HRFOversampling',         '--hrf-oversampling',          'value',      '',                         [],        false
        'Bundle',                  '--bundle',                    'path',       '',                         [],        false
        'PCA',                     '--pca',                       'value',      '',                         [],        false
        'PCAFrom',                 '--pca-from',                  'path',       '',                         [],        false
        'ZScore',                  '--zscore',                    'choice',     'run|none',                 [],        false
        'BidsOut',                 '--bids-out',                  'path',       '',                         [],        false
        'HopliteDb',               '--hoplite-db',                'path',       '',                         [],        false
        'Plot',                    '--plot',                      'switch',     '',                         [],        false
        'Detections',              '--detections',                'switch',     '',                         [],        false
        'MinConf',                 '--min-conf',                  'value',      '',                         [],        false
        'Sensitivity',             '--sensitivity',               'value',      '',                         [],        false
        'Overlap',                 '--overlap',                   'value',      '',                         [],        false
        'SpeciesList',             '--species-list',              'path',       '',                         [],        false
        'Lat',                     '--lat',                       'value',      '',                         [],        false
        'Lon',                     '--lon',                       'value',      '',                         [],        false
        'Week',                    '--week',                      'value',      '',                         [],        false
        'LocationFilterThreshold', '--location-filter-threshold', 'value',      '',                         [],        false
        'TopN',                    '--detections-top-n',          'value',      '',                         [],        false
        'Rtype',                   '--rtype',                     'value',      '',                         [],        false
        'Compile',                 '--compile',                   'switch',     '',                         [],        false
        'AllowTruncated',          '--allow-truncated',           'switch',     '',                         false,     false
    };
    table = cell2struct(rows, {'name', 'flag', 'kind', 'choices', 'default', 'wrapper'}, 2);
    for k = 1:numel(table)
        if isempty(table(k).choices)
            table(k).choices = {};
        else
            table(k).choices = strsplit(table(k).choices, '|');
        end
    end
end
t = table;
end
